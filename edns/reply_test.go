package edns

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestErrorReplyVectors checks whole answers, byte for byte, written by hand
// from RFC 1035, RFC 6891 and RFC 7873; the cookie is RFC 9018's A.1.
func TestErrorReplyVectors(t *testing.T) {
	v := rfc9018Vectors[0]
	c := mustCookies(t, v.secret)
	ip, now := netip.MustParseAddr(v.client), time.Unix(v.now, 0)
	const (
		question = "03 777777 07 6578616d706c65 03 636f6d 00 0001 0001" // www.example.com. A IN
		opt      = "00 0029 04d0 00008000 0000"                         // 1232, DO
		// The OPT record of an error answer: 1252, DO echoed.
		optFORMERR = "00 0029 04e4 00008000 0000"
		optBADVERS = "00 0029 04e4 01008000 0000" // extended RCODE 1: 16 = BADVERS
	)
	tests := []struct {
		name  string
		query string
		want  string // "" for no answer
	}{
		{"11 bytes: dropped", "abcd 0100 0001 0000 0000 00", ""},
		{"a response: dropped", "abcd 8180 0001 0000 0000 0000" + question, ""},
		{"a response, header only: dropped", "abcd 8000 0000 0000 0000 0000", ""},
		// Flags: RD 0x0100, CD 0x0010 echoed; AA, TC, AD, Z of the query not.
		// Answer flags: QR 0x8000, RA 0x0080.
		{"header only: FORMERR", "abcd 0100 0000 0000 0000 0000",
			"abcd 8181 0000 0000 0000 0000"},
		{"RD CD kept, AA TC AD Z dropped", "abcd 0775 0000 0000 0000 0000",
			"abcd 8191 0000 0000 0000 0000"},
		{"no question, OPT without cookie: FORMERR with OPT", "abcd 0100 0000 0000 0000 0001" + opt,
			"abcd 8181 0000 0000 0000 0001" + optFORMERR},
		{"two questions: FORMERR without them", "abcd 0100 0002 0000 0000 0001" + question + question + opt,
			"abcd 8181 0000 0000 0000 0001" + optFORMERR},
		{"answer record: FORMERR with question and OPT",
			"abcd 0100 0001 0001 0000 0001" + question + "c00c 0001 0001 00000000 0004 7f000001" + opt,
			"abcd 8181 0001 0000 0000 0001" + question + optFORMERR},
		{"compressed question: FORMERR without it", "abcd 0100 0001 0000 0000 0001 c00c 0001 0001" + opt,
			"abcd 8181 0000 0000 0000 0001" + optFORMERR},
		{"trailing byte: FORMERR", "abcd 0100 0001 0000 0000 0000" + question + "00",
			"abcd 8181 0001 0000 0000 0000" + question},
		{"two OPT: FORMERR without OPT", "abcd 0100 0001 0000 0000 0002" + question + opt + opt,
			"abcd 8181 0001 0000 0000 0000" + question},
		{"OPT not owned by the root: FORMERR without OPT", "abcd 0100 0001 0000 0000 0001" + question + "01 61 00 0029 04d0 00008000 0000",
			"abcd 8181 0001 0000 0000 0000" + question},
		{"option overruns the OPT: FORMERR with OPT", "abcd 0100 0001 0000 0000 0001" + question + "00 0029 04d0 00008000 0004 000a 0008",
			"abcd 8181 0001 0000 0000 0001" + question + optFORMERR},
		{"COOKIE of 12 bytes: FORMERR with OPT", "abcd 0100 0001 0000 0000 0001" + question + "00 0029 04d0 00008000 0010 000a 000c 0102030405060708 090a0b0c",
			"abcd 8181 0001 0000 0000 0001" + question + optFORMERR},
		{"EDNS version 1: BADVERS", "abcd 0110 0001 0000 0000 0001" + question + "00 0029 04d0 00018000 0000",
			"abcd 8190 0001 0000 0000 0001" + question + optBADVERS},
		{"EDNS version 255, DO clear, odd options: BADVERS", "abcd 0100 0001 0000 0000 0001" + question + "00 0029 0200 00ff0000 0002 ffff",
			"abcd 8180 0001 0000 0000 0001" + question + "00 0029 04e4 01000000 0000"},
		{"EDNS version 1 without a question: BADVERS", "abcd 0100 0000 0000 0000 0001 00 0029 04d0 00018000 000c 000a 0008 0102030405060708",
			"abcd 8180 0000 0000 0000 0001" + optBADVERS},
		{"NOTIFY: NOTIMP, opcode kept", "abcd 2000 0001 0000 0000 0000" + question,
			"abcd a084 0001 0000 0000 0000" + question},
		{"UPDATE with records: NOTIMP with OPT", "abcd 2900 0001 0000 0001 0001" + question + "c00c 0001 0001 00000000 0004 7f000001" + opt,
			"abcd a984 0001 0000 0000 0001" + question + optFORMERR},
		{"STATUS, no question: NOTIMP", "abcd 1000 0000 0000 0000 0000",
			"abcd 9084 0000 0000 0000 0000"},
		{"cookie only: NOERROR with our cookie", "abcd 0100 0000 0000 0000 0001 00 0029 04d0 00008000 000c 000a 0008" + v.query,
			"abcd 8180 0000 0000 0000 0001 00 0029 04e4 00008000 001c 000a 0018" + v.answer},
		{"cookie only, with a server cookie: a fresh one", "abcd 0100 0000 0000 0000 0001 00 0029 04d0 00000000 001c 000a 0018" + v.query + "0100000000000000 0000000000000000",
			"abcd 8180 0000 0000 0000 0001 00 0029 04e4 00000000 001c 000a 0018" + v.answer},
		{"cookie only, padding first", "abcd 0100 0000 0000 0000 0001 00 0029 04d0 00008000 0012 000c 0002 0000 000a 0008" + v.query,
			"abcd 8180 0000 0000 0000 0001 00 0029 04e4 00008000 001c 000a 0018" + v.answer},
		{"a query PrepareQuery takes: FORMERR all the same", "abcd 0100 0001 0000 0000 0000" + question,
			"abcd 8181 0001 0000 0000 0000" + question},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := mustHex(tt.query)
			got, ok := ErrorReply([]byte("prefix"), pkt, c, ip, now)
			if tt.want == "" {
				if ok || string(got) != "prefix" {
					t.Errorf("got %x, %v; want no answer", got, ok)
				}
				return
			}
			want := append([]byte("prefix"), mustHex(tt.want)...)
			if !ok || !bytes.Equal(got, want) {
				t.Errorf("got %x, %v\nwant %x", got, ok, want)
			}
			// In place, when the query is at least as long.
			if len(pkt) >= len(want)-len("prefix") {
				if got, _ := ErrorReply(pkt[:0], pkt, c, ip, now); !bytes.Equal(got, want[len("prefix"):]) {
					t.Errorf("in place: got %x", got)
				}
			}
		})
	}
}

// TestErrorReply checks the answer to each kind of refused query, field by
// field, as a client library reads it.
func TestErrorReply(t *testing.T) {
	v := rfc9018Vectors[2] // the client sends a server cookie too
	c := mustCookies(t, v.secret)
	ip, now := netip.MustParseAddr(v.client), time.Unix(v.now, 0)
	base := func() *dns.Msg {
		m := newQuery("Www.Example.COM.", dns.TypeMX)
		m.Id = 0xbeef
		m.CheckingDisabled = true
		m.AuthenticatedData = true
		return m
	}
	withEDNS := func(m *dns.Msg, version uint8, do bool, opts ...dns.EDNS0) *dns.Msg {
		withOPT(m, 4096, do, opts...)
		m.IsEdns0().SetVersion(version)
		return m
	}
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: v.query}
	tests := []struct {
		name      string
		pkt       []byte
		cookies   *Cookies
		err       error // what PrepareQuery says
		rcode     int   // with the extended bits
		question  bool
		opt       bool
		do        bool
		cookieOut string
	}{
		{"no question, no OPT", func() []byte {
			m := base()
			m.Question = nil
			return pack(t, m)
		}(), c, ErrMalformed, dns.RcodeFormatError, false, false, false, ""},
		{"no question, OPT without cookie", func() []byte {
			m := withEDNS(base(), 0, true)
			m.Question = nil
			return pack(t, m)
		}(), c, ErrMalformed, dns.RcodeFormatError, false, true, true, ""},
		{"cookie only", func() []byte {
			m := withEDNS(base(), 0, true, cookie)
			m.Question = nil
			return pack(t, m)
		}(), c, ErrCookieOnly, dns.RcodeSuccess, false, true, true, v.answer},
		{"cookie only, no Cookies", func() []byte {
			m := withEDNS(base(), 0, false, cookie)
			m.Question = nil
			return pack(t, m)
		}(), nil, ErrCookieOnly, dns.RcodeFormatError, false, true, false, ""},
		{"EDNS version 1", pack(t, withEDNS(base(), 1, true, cookie)), c, ErrBadVersion, dns.RcodeBadVers, true, true, true, ""},
		{"EDNS version 1, no Cookies", pack(t, withEDNS(base(), 1, false)), nil, ErrBadVersion, dns.RcodeBadVers, true, true, false, ""},
		{"answer record", func() []byte {
			m := withEDNS(base(), 0, false, cookie)
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "www.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: []byte{192, 0, 2, 1}}}
			return pack(t, m)
		}(), c, ErrMalformed, dns.RcodeFormatError, true, true, false, ""},
		{"authority record, no OPT", func() []byte {
			m := base()
			m.Ns = []dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeNS, Class: dns.ClassINET}, Ns: "ns.example.com."}}
			return pack(t, m)
		}(), c, ErrMalformed, dns.RcodeFormatError, true, false, false, ""},
		{"bad cookie length", pack(t, withEDNS(base(), 0, true, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "01020304"})), c, ErrMalformed, dns.RcodeFormatError, true, true, true, ""},
		{"opcode IQUERY", func() []byte {
			m := withEDNS(base(), 0, true, cookie)
			m.Opcode = dns.OpcodeIQuery
			return pack(t, m)
		}(), c, ErrNotQuery, dns.RcodeNotImplemented, true, true, true, ""},
		{"opcode NOTIFY, version 1: NOTIMP first", func() []byte {
			m := withEDNS(base(), 1, false)
			m.Opcode = dns.OpcodeNotify
			return pack(t, m)
		}(), c, ErrNotQuery, dns.RcodeNotImplemented, true, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := unpack(t, tt.pkt)
			if _, _, err := PrepareQuery(nil, tt.pkt, DefaultPayloadSize); !errors.Is(err, tt.err) {
				t.Fatalf("PrepareQuery: got %v, want %v", err, tt.err)
			}
			got, ok := ErrorReply(nil, tt.pkt, tt.cookies, ip, now)
			if !ok {
				t.Fatal("no answer")
			}
			if len(got) > MinUDPSize {
				t.Errorf("got %d bytes", len(got))
			}
			m := unpack(t, got)
			want := dns.MsgHdr{
				Id: in.Id, Response: true, Opcode: in.Opcode, RecursionDesired: in.RecursionDesired,
				CheckingDisabled: in.CheckingDisabled, RecursionAvailable: true, Rcode: tt.rcode,
			}
			if m.MsgHdr != want {
				t.Errorf("got header %+v\nwant %+v", m.MsgHdr, want)
			}
			if tt.question != (len(m.Question) == 1) || len(m.Question) > 1 ||
				tt.question && m.Question[0] != in.Question[0] {
				t.Errorf("got question %v, from %v", m.Question, in.Question)
			}
			if len(m.Answer)+len(m.Ns) != 0 || len(m.Extra) != boolInt(tt.opt) {
				t.Errorf("got sections %v %v %v", m.Answer, m.Ns, m.Extra)
			}
			opt := m.IsEdns0()
			if (opt != nil) != tt.opt {
				t.Fatalf("got OPT %v, want %v", opt, tt.opt)
			}
			if opt == nil {
				return
			}
			if opt.Hdr.Name != "." || opt.Version() != 0 || opt.UDPSize() != DefaultPayloadSize ||
				opt.Do() != tt.do || opt.Hdr.Ttl&0x7fff != 0 {
				t.Errorf("got OPT %v (TTL %#x)", opt, opt.Hdr.Ttl)
			}
			var cookies []string
			for _, o := range opt.Option {
				cookies = append(cookies, o.(*dns.EDNS0_COOKIE).Cookie)
			}
			if tt.cookieOut == "" && len(cookies) != 0 || tt.cookieOut != "" && (len(cookies) != 1 || cookies[0] != tt.cookieOut) {
				t.Errorf("got options %v, want cookie %q", opt.Option, tt.cookieOut)
			}
		})
	}
}

func TestErrorReplyAllocs(t *testing.T) {
	v := rfc9018Vectors[0]
	c := mustCookies(t, v.secret)
	ip, now := netip.MustParseAddr(v.client), time.Unix(v.now, 0)
	for _, pkt := range [][]byte{
		mustHex("abcd 0100 0000 0000 0000 0001 00 0029 04d0 00008000 000c 000a 0008" + v.query),
		mustHex("abcd 0100 0001 0000 0000 0001 03 777777 00 0001 0001 00 0029 04d0 00018000 0000"),
		mustHex("abcd 0100 0002 0000 0000 0000 03 777777 00 0001 0001 03 777777 00 0001 0001"),
	} {
		buf := make([]byte, 0, 512)
		n := testing.AllocsPerRun(100, func() {
			if _, ok := ErrorReply(buf, pkt, c, ip, now); !ok {
				t.Fatal("no answer")
			}
		})
		if n != 0 {
			t.Errorf("%x: got %v allocations, want 0", pkt, n)
		}
	}
}

func TestRcodeReply(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  bool
		do   bool
	}{{"no OPT", false, false}, {"OPT", true, false}, {"OPT with DO", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion("Www.Example.", dns.TypeMX)
			q.Id, q.CheckingDisabled = 4242, true
			if tc.opt {
				q.SetEdns0(4096, tc.do)
			}
			pkt, err := q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			prepared, meta, err := PrepareQuery(nil, pkt, DefaultPayloadSize)
			if err != nil {
				t.Fatal(err)
			}
			out := RcodeReply([]byte("x"), prepared, dns.RcodeServerFailure)
			if out[0] != 'x' {
				t.Fatal("dst clobbered")
			}
			r := new(dns.Msg)
			if err := r.Unpack(out[1:]); err != nil {
				t.Fatal(err)
			}
			if r.Id != 4242 || !r.Response || !r.RecursionAvailable || !r.RecursionDesired || !r.CheckingDisabled ||
				r.Rcode != dns.RcodeServerFailure || len(r.Question) != 1 || r.Question[0] != q.Question[0] ||
				len(r.Answer)+len(r.Ns) != 0 {
				t.Fatalf("got %v", r)
			}
			// PrepareAnswer fits it to the client: its OPT or none.
			final, err := PrepareAnswer(nil, out[1:], meta)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Unpack(final); err != nil {
				t.Fatal(err)
			}
			opt := r.IsEdns0()
			if (opt != nil) != tc.opt || opt != nil && opt.Do() != tc.do {
				t.Fatalf("client OPT %v, DO %v: answer OPT %v", tc.opt, tc.do, opt)
			}
			if n := testing.AllocsPerRun(100, func() { out = RcodeReply(out[:0], prepared, dns.RcodeServerFailure) }); n != 0 {
				t.Fatalf("%v allocations", n)
			}
		})
	}
}
