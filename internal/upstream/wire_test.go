package upstream

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

// pack packs m, failing the test if it cannot.
func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func queryMsg(name string, qtype uint16, opt bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.Id = 0
	if opt {
		m.SetEdns0(1232, true)
	}
	return m
}

// bigAnswer answers q with n A records and an OPT record (with a Padding
// option of pad bytes if pad >= 0), compressed.
func bigAnswer(q *dns.Msg, n, pad int) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Compress = true
	for i := range n {
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA,
			Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i))})
	}
	m.SetEdns0(1232, true)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "abcd"})
	if pad >= 0 {
		opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, pad)})
	}
	return m
}

// TestCheckAnswer: answers that frame as DNS messages answering the query
// pass; others give ErrCorrupt.
func TestCheckAnswer(t *testing.T) {
	q := queryMsg("www.Example.org", dns.TypeA, true)
	qb := pack(t, q)
	good := bigAnswer(q, 3, 10)
	goodb := pack(t, good)
	mod := func(f func(m *dns.Msg)) []byte {
		m := good.Copy()
		f(m)
		return pack(t, m)
	}
	header := func(rcode int) []byte {
		b := append([]byte(nil), goodb[:dnsHeaderLen]...)
		b[3] = b[3]&0xF0 | byte(rcode)
		return b
	}
	for _, tc := range []struct {
		name string
		ans  []byte
		ok   bool
	}{
		{"good", goodb, true},
		{"name in other case", mod(func(m *dns.Msg) { m.Question[0].Name = "WWW.example.ORG." }), true},
		{"NXDOMAIN", mod(func(m *dns.Msg) { m.Answer, m.Rcode = nil, dns.RcodeNameError }), true},
		{"REFUSED, no question", mod(func(m *dns.Msg) { m.Question, m.Answer, m.Rcode = nil, nil, dns.RcodeRefused }), true},
		{"REFUSED, bare header", header(dns.RcodeRefused), true},
		{"NOERROR, bare header", header(dns.RcodeSuccess), false},
		{"NOERROR, no question", mod(func(m *dns.Msg) { m.Question = nil }), false},
		{"other name", mod(func(m *dns.Msg) { m.Question[0].Name = "www.example.net." }), false},
		{"other type", mod(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }), false},
		{"other class", mod(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), false},
		{"two questions", mod(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), false},
		{"other ID", mod(func(m *dns.Msg) { m.Id = 7 }), false},
		{"QR clear", mod(func(m *dns.Msg) { m.Response = false }), false},
		{"other opcode", mod(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), false},
		{"short", goodb[:11], false},
		{"cut", goodb[:len(goodb)-1], false},
		{"trailing byte", append(append([]byte(nil), goodb...), 0), false},
		{"too long", append(append([]byte(nil), goodb...), make([]byte, 65536)...), false},
		{"garbage", []byte("HTTP/1.1 200 OK\r\n\r\nnot dns"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkAnswer(tc.ans, qb)
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestWalkMessage: framing errors, compression pointers.
func TestWalkMessage(t *testing.T) {
	q := queryMsg("a.example", dns.TypeA, false)
	good := pack(t, bigAnswer(q, 2, -1))
	l, err := walkMessage(good)
	if err != nil || l.records != 3 || l.lastType != typeOPT {
		t.Fatalf("good answer: %+v, %v", l, err)
	}
	hdr := func(qd, an uint16) []byte {
		return []byte{0, 0, 0x81, 0, byte(qd >> 8), byte(qd), byte(an >> 8), byte(an), 0, 0, 0, 0}
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"pointer forward", append(hdr(1, 0), 0xC0, 14, 0, 1, 0, 1), errWirePointer},
		{"pointer into header", append(hdr(1, 0), 0xC0, 2, 0, 1, 0, 1), errWirePointer},
		{"pointer to itself", append(append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1), 0xC0, 19, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0), errWirePointer},
		{"reserved label", append(hdr(1, 0), 0x40, 0, 1, 0, 1), errWireLabel},
		{"label overruns", append(hdr(1, 0), 5, 'a'), errWireShort},
		{"long name", append(append(hdr(1, 0), bytes.Repeat([]byte{63}, 1)...), make([]byte, 300)...), errWireName},
		{"record overruns", append(append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1), 0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 9, 1), errWireShort},
		{"trailing", append(hdr(0, 0), 0), errWireTrailing},
	} {
		if tc.name == "long name" {
			// 5 labels of 63 bytes: 320 bytes of name.
			tc.msg = hdr(1, 0)
			for range 5 {
				tc.msg = append(append(tc.msg, 63), bytes.Repeat([]byte{'a'}, 63)...)
			}
			tc.msg = append(tc.msg, 0, 0, 1, 0, 1)
		}
		if _, err := walkMessage(tc.msg); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// A pointer back to the question's name is fine.
	ok := append(append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1), 0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4)
	if _, err := walkMessage(ok); err != nil {
		t.Errorf("pointer to the question: %v", err)
	}
}

// FuzzCheckAnswer compares checkAnswer with two other parsers: what it
// accepts, golang.org/x/net/dns/dnsmessage frames the same way, with the
// query's ID, QR and question; and padding removed from it, it still
// passes.
func FuzzCheckAnswer(f *testing.F) {
	q := queryMsg("www.example.org", dns.TypeA, true)
	qb := pack(f, q)
	f.Add(pack(f, bigAnswer(q, 3, 20)))
	f.Add(pack(f, bigAnswer(q, 0, -1)))
	nx := bigAnswer(q, 0, -1)
	nx.Rcode, nx.Question = dns.RcodeRefused, nil
	f.Add(pack(f, nx))
	f.Add([]byte{0, 0, 0x81, 0x85, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("garbage garbage garbage"))
	f.Fuzz(func(t *testing.T, ans []byte) {
		l, err := checkAnswer(ans, qb)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if len(ans) == dnsHeaderLen {
			return // a bare header with an error RCODE
		}
		var p dnsmessage.Parser
		h, err := p.Start(ans)
		if err != nil || h.ID != 0 || !h.Response {
			t.Fatalf("accepted, but dnsmessage: %+v, %v", h, err)
		}
		qs, err := p.AllQuestions()
		if err != nil {
			t.Fatalf("accepted, but dnsmessage: questions: %v", err)
		}
		if len(qs) == 1 && (qs[0].Type != dnsmessage.TypeA || !equalFoldName([]byte(qs[0].Name.String()), []byte("www.example.org."))) {
			t.Fatalf("accepted question %v", qs[0])
		}
		if len(qs) == 0 && h.RCode == dnsmessage.RCodeSuccess {
			t.Fatal("accepted NOERROR without a question")
		}
		if err := p.SkipAllAnswers(); err != nil {
			t.Fatalf("accepted, but dnsmessage: answers: %v", err)
		}
		if err := p.SkipAllAuthorities(); err != nil {
			t.Fatalf("accepted, but dnsmessage: authorities: %v", err)
		}
		if err := p.SkipAllAdditionals(); err != nil {
			t.Fatalf("accepted, but dnsmessage: additionals: %v", err)
		}
		out, _, _ := edns.StripStreamOptions(bytes.Clone(ans))
		if _, err := checkAnswer(out, qb); err != nil {
			t.Fatalf("unpadded, refused: %v", err)
		}
		if l.lastType == typeOPT && hasPadding(out) {
			t.Fatal("a Padding option left")
		}
	})
}

// hasPadding reports whether msg parses and its OPT record, its last
// record, holds a Padding option.
func hasPadding(msg []byte) bool {
	m := new(dns.Msg)
	if m.Unpack(msg) != nil || len(m.Extra) == 0 {
		return false
	}
	opt, ok := m.Extra[len(m.Extra)-1].(*dns.OPT)
	return ok && slices.ContainsFunc(opt.Option, func(o dns.EDNS0) bool { return o.Option() == dns.EDNS0PADDING })
}
