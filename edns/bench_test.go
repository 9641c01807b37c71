package edns

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The wire functions against the plain *dns.Msg path doing the same job.

func benchQueries(b *testing.B) map[string][]byte {
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
	cookie24 := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: rfc9018Vectors[1].query}
	return map[string][]byte{
		// glibc-style: no OPT.
		"plain": pack(b, newQuery("www.example.com.", dns.TypeA)),
		// dig-style: OPT 1232, DO, client cookie.
		"dig": pack(b, withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true, cookie)),
		// dig's next query: client and server cookie.
		"dig24": pack(b, withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true, cookie24)),
		// unbound-style: OPT 1232, DO, no cookie.
		"nocookie": pack(b, withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true)),
	}
}

func BenchmarkPrepareQuery(b *testing.B) {
	for _, name := range []string{"plain", "dig", "dig24", "nocookie"} {
		pkt := benchQueries(b)[name]
		b.Run(name+"/wire", func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := PrepareQuery(buf, pkt, DefaultPayloadSize); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/msg", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := new(dns.Msg)
				if err := m.Unpack(pkt); err != nil {
					b.Fatal(err)
				}
				SetPayloadSize(m, DefaultPayloadSize)
				if _, err := m.Pack(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPrepareAnswer(b *testing.B) {
	qOPT := withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true)
	qPlain := newQuery("www.example.com.", dns.TypeA)
	qCookie := withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true,
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	cookies := NewCookies([16]byte{1})
	cases := []struct {
		name  string
		query *dns.Msg
		n     int // A records in the answer, which carries an OPT
	}{
		{"fits", qOPT, 4},           // client OPT, 4 A records: unchanged
		{"strip", qPlain, 4},        // client without OPT: OPT removed
		{"cookie", qCookie, 4},      // client cookie: ours added
		{"truncate1232", qOPT, 200}, // 200 A records cut to 1232
		{"truncate512", qPlain, 200},
	}
	for _, c := range cases {
		q := mustPrepare(b, pack(b, c.query), DefaultPayloadSize)
		cookies.Stamp(&q, netip.MustParseAddr("127.0.0.1"), time.Unix(1700000000, 0))
		ans := pack(b, answerFor(c.query, c.n, true))
		b.Run(c.name+"/wire", func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(ans)))
			for b.Loop() {
				if _, err := PrepareAnswer(buf, ans, q); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/msg", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(ans)))
			for b.Loop() {
				m := new(dns.Msg)
				if err := m.Unpack(ans); err != nil {
					b.Fatal(err)
				}
				if !q.HadOPT {
					removeOPT(m)
				} else if q.cookie == cookieStamped {
					removeCookies(m)
					m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(q.cookieBytes[:])})
				}
				Truncate(m, q.Limit)
				if _, err := m.Pack(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTCReply(b *testing.B) {
	pkt := benchQueries(b)["dig"]
	b.Run("wire", func(b *testing.B) {
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := TCReplyBytes(buf, pkt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msg", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := new(dns.Msg)
			if err := m.Unpack(pkt); err != nil {
				b.Fatal(err)
			}
			if _, err := TCReply(m).Pack(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkStamp(b *testing.B) {
	cookies := NewCookies([16]byte{1})
	q := mustPrepare(b, benchQueries(b)["dig"], DefaultPayloadSize)
	ip, now := netip.MustParseAddr("127.0.0.1"), time.Unix(1700000000, 0)
	b.ReportAllocs()
	for b.Loop() {
		s := q
		cookies.Stamp(&s, ip, now)
	}
}

func BenchmarkErrorReply(b *testing.B) {
	cookies := NewCookies([16]byte{1})
	ip, now := netip.MustParseAddr("127.0.0.1"), time.Unix(1700000000, 0)
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"formerr", mustHex("abcd 0100 0002 0000 0000 0001 01 61 00 0001 0001 01 62 00 0001 0001 00 0029 04d0 00008000 0000")},
		{"badvers", mustHex("abcd 0100 0001 0000 0000 0001 01 61 00 0001 0001 00 0029 04d0 00018000 0000")},
		{"cookieonly", seedCookieOnly},
	} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := ErrorReply(buf, c.pkt, cookies, ip, now); !ok {
					b.Fatal("no answer")
				}
			}
		})
	}
}
