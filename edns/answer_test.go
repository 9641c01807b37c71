package edns

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestPrepareAnswer(t *testing.T) {
	qNoOPT := newQuery("www.Example.com.", dns.TypeA)
	qOPT := withOPT(newQuery("www.Example.com.", dns.TypeA), 1232, true)
	qBig := withOPT(newQuery("www.Example.com.", dns.TypeTXT), 4096, true)
	qTXT := newQuery("www.Example.com.", dns.TypeTXT)

	glue := func(a *dns.Msg) *dns.Msg {
		a.Ns = append(a.Ns, &dns.NS{Hdr: dns.RR_Header{Name: "Example.com.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 60}, Ns: "ns1.example.com."})
		a.Extra = append(a.Extra, &dns.A{Hdr: dns.RR_Header{Name: "ns1.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 53)})
		return a
	}
	tests := []struct {
		name      string
		query     *dns.Msg
		tcp       bool
		answer    func() *dns.Msg
		same      bool // bytes pass unchanged
		wantTC    bool
		wantOPT   bool
		wantRcode int
		wantRRs   int // answer+authority+additional without OPT; -1: fewer than sent
	}{
		{"fits, client OPT", qOPT, false, func() *dns.Msg { return answerFor(qOPT, 5, true) }, true, false, true, 0, 5},
		{"fits, no OPT anywhere", qNoOPT, false, func() *dns.Msg { return answerFor(qNoOPT, 5, false) }, true, false, false, 0, 5},
		{"strip OPT", qNoOPT, false, func() *dns.Msg { return glue(answerFor(qNoOPT, 5, true)) }, false, false, false, 0, 7},
		{"strip OPT with BADVERS", qNoOPT, false, func() *dns.Msg {
			a := answerFor(qNoOPT, 0, true)
			a.Rcode = dns.RcodeBadVers
			return a
		}, false, false, false, dns.RcodeServerFailure, 0},
		{"strip OPT before glue", qNoOPT, false, func() *dns.Msg {
			a := glue(answerFor(qNoOPT, 3, false))
			a.SetEdns0(1232, false)
			a.Extra[0], a.Extra[1] = a.Extra[1], a.Extra[0]
			return a
		}, false, false, false, 0, 5},
		{"OPT before glue, client OPT: unchanged", qOPT, false, func() *dns.Msg {
			a := glue(answerFor(qOPT, 3, false))
			a.SetEdns0(1232, false)
			a.Extra[0], a.Extra[1] = a.Extra[1], a.Extra[0]
			return a
		}, true, false, true, 0, 5},
		{"OPT before glue with the resolver's cookie: removed", qOPT, false, func() *dns.Msg {
			a := glue(answerFor(qOPT, 3, false))
			a.SetEdns0(1232, false)
			a.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708f1f2f3f4f5f6f7f8"}}
			a.Extra[0], a.Extra[1] = a.Extra[1], a.Extra[0]
			return a
		}, false, false, true, 0, 5},
		{"strip OPT in authority", qNoOPT, false, func() *dns.Msg {
			a := answerFor(qNoOPT, 3, false)
			a.SetEdns0(1232, false)
			a.Ns, a.Extra = a.Extra, nil
			return a
		}, false, false, false, 0, 3},
		{"truncate 200 A, client OPT 1232", qOPT, false, func() *dns.Msg { return answerFor(qOPT, 200, true) }, false, true, true, 0, -1},
		{"truncate 200 A, no client OPT", qNoOPT, false, func() *dns.Msg { return answerFor(qNoOPT, 200, true) }, false, true, false, 0, -1},
		{"truncate 200 A, no OPT at all", qNoOPT, false, func() *dns.Msg { return answerFor(qNoOPT, 200, false) }, false, true, false, 0, -1},
		{"13 TXT fit 4096", qBig, false, func() *dns.Msg { return txtAnswer(qBig, 13, 254, true) }, true, false, true, 0, 13},
		{"13 TXT truncated to 512", qTXT, false, func() *dns.Msg { return txtAnswer(qTXT, 13, 254, true) }, false, true, false, 0, -1},
		{"13 TXT over TCP", qTXT, true, func() *dns.Msg { return txtAnswer(qTXT, 13, 254, true) }, false, false, false, 0, 13},
		{"200 A over TCP, client OPT", qOPT, true, func() *dns.Msg { return answerFor(qOPT, 200, true) }, true, false, true, 0, 200},
		{"question case differs", qOPT, false, func() *dns.Msg {
			a := answerFor(qOPT, 1, true)
			a.Question[0].Name = "WWW.EXAMPLE.COM."
			return a
		}, true, false, true, 0, 1},
		{"SERVFAIL without question", qOPT, false, func() *dns.Msg {
			a := answerFor(qOPT, 0, true)
			a.Question = nil
			a.Rcode = dns.RcodeServerFailure
			return a
		}, true, false, true, dns.RcodeServerFailure, 0},
		{"upstream TC kept", qOPT, false, func() *dns.Msg {
			a := answerFor(qOPT, 0, true)
			a.Truncated = true
			return a
		}, true, true, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustPrepare(t, pack(t, tt.query), DefaultPayloadSize)
			if tt.tcp {
				q.Limit = MaxTCPSize
			}
			in := tt.answer()
			ans := pack(t, in)
			got, err := PrepareAnswer([]byte("prefix"), ans, q)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatalf("dst overwritten: %x", got)
			}
			got = got[len("prefix"):]
			if same := bytes.Equal(got, ans); same != tt.same {
				t.Errorf("got unchanged=%v, want %v", same, tt.same)
			}
			if len(got) > q.Limit {
				t.Errorf("got %d bytes, limit %d", len(got), q.Limit)
			}
			m := unpack(t, got)
			if m.Id != tt.query.Id || !m.Response {
				t.Errorf("got ID %#x QR %v", m.Id, m.Response)
			}
			if len(in.Question) > 0 && (len(m.Question) != 1 || m.Question[0] != in.Question[0]) {
				t.Errorf("got question %v, want %v", m.Question, in.Question)
			}
			if m.Truncated != tt.wantTC {
				t.Errorf("got TC %v, want %v", m.Truncated, tt.wantTC)
			}
			if got := countOPT(m); got != boolInt(tt.wantOPT) {
				t.Errorf("got %d OPT records, want %v", got, tt.wantOPT)
			}
			if hasCookie(m) {
				t.Errorf("the resolver's cookie reached the client: %v", m.IsEdns0())
			}
			if m.Rcode != tt.wantRcode {
				t.Errorf("got rcode %d, want %d", m.Rcode, tt.wantRcode)
			}
			rrs := len(m.Answer) + len(m.Ns) + len(m.Extra) - countOPT(m)
			sent := len(in.Answer) + len(in.Ns) + len(in.Extra) - countOPT(in)
			if tt.wantRRs >= 0 && rrs != tt.wantRRs {
				t.Errorf("got %d records, want %d", rrs, tt.wantRRs)
			}
			if tt.wantRRs < 0 && (rrs >= sent || rrs == 0) {
				t.Errorf("got %d records of %d, want some but not all", rrs, sent)
			}
			if !tt.wantOPT && countOPT(in) == 1 {
				// Exactly the OPT went: nothing else changed.
				removeOPT(in)
				if c, _ := canonical(got); !bytes.Equal(c, pack(t, func() *dns.Msg { in.Compress = false; return in }())) && tt.wantRRs >= 0 {
					t.Errorf("got %x, want %x", c, pack(t, in))
				}
			}
		})
	}
}

func TestPrepareAnswerHeaderOnly(t *testing.T) {
	q := mustPrepare(t, pack(t, newQuery("example.com.", dns.TypeA)), DefaultPayloadSize)
	ans := header(0x1234, 0x8185, 1, 0, 0, 0) // QR RD RA REFUSED, QD=1 but no question
	got, err := PrepareAnswer(nil, ans, q)
	if err != nil {
		t.Fatal(err)
	}
	if want := header(0x1234, 0x8185, 0, 0, 0, 0); !bytes.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
	ans = header(0x1234, 0x8180, 1, 0, 0, 0) // NOERROR: not acceptable
	if _, err := PrepareAnswer(nil, ans, q); !errors.Is(err, ErrMalformed) {
		t.Errorf("NOERROR header only: got %v, want ErrMalformed", err)
	}
}

func TestPrepareAnswerMismatch(t *testing.T) {
	query := withOPT(newQuery("www.example.com.", dns.TypeA), 1232, false)
	q := mustPrepare(t, pack(t, query), DefaultPayloadSize)
	good := answerFor(query, 1, true)
	mod := func(f func(a *dns.Msg)) []byte {
		a := good.Copy()
		f(a)
		return pack(t, a)
	}
	raw := func(f func(b []byte) []byte) []byte { return f(pack(t, good)) }
	tests := []struct {
		name string
		ans  []byte
		want error
	}{
		{"ID", mod(func(a *dns.Msg) { a.Id++ }), ErrMismatch},
		{"QR clear", mod(func(a *dns.Msg) { a.Response = false }), ErrMismatch},
		{"opcode", mod(func(a *dns.Msg) { a.Opcode = dns.OpcodeNotify }), ErrMismatch},
		{"name", mod(func(a *dns.Msg) { a.Question[0].Name = "ww.example.com." }), ErrMismatch},
		{"name same length", mod(func(a *dns.Msg) { a.Question[0].Name = "www.examplf.com." }), ErrMismatch},
		{"name labels moved", mod(func(a *dns.Msg) { a.Question[0].Name = "wwwexample.com." }), ErrMismatch},
		{"type", mod(func(a *dns.Msg) { a.Question[0].Qtype = dns.TypeAAAA }), ErrMismatch},
		{"class", mod(func(a *dns.Msg) { a.Question[0].Qclass = dns.ClassCHAOS }), ErrMismatch},
		{"no question, NOERROR", mod(func(a *dns.Msg) { a.Question = nil }), ErrMismatch},
		{"two questions", mod(func(a *dns.Msg) { a.Question = append(a.Question, a.Question[0]) }), ErrMalformed},
		{"short", []byte{0x12, 0x34, 0x81}, ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"question cut", raw(func(b []byte) []byte { return b[:20] }), ErrMalformed},
		{"compressed question", cat(header(0x1234, 0x8180, 1, 0, 0, 0), mustHex("c00c 0001 0001")), ErrMalformed},
		{"too long", raw(func(b []byte) []byte { return append(b, make([]byte, 65536)...) }), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PrepareAnswer([]byte("keep"), tt.ans, q)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !bytes.Equal(got, []byte("keep")) {
				t.Errorf("got %x on error", got)
			}
		})
	}
	// The zero Query matches nothing.
	if _, err := PrepareAnswer(nil, pack(t, good), Query{ID: good.Id}); !errors.Is(err, ErrMismatch) {
		t.Errorf("zero Query: got %v, want ErrMismatch", err)
	}
}

func TestPrepareAnswerMalformedBody(t *testing.T) {
	// Client without OPT, so the records are walked; a lying count or a cut
	// record is judged by miekg/dns.
	query := newQuery("example.com.", dns.TypeA)
	q := mustPrepare(t, pack(t, query), DefaultPayloadSize)
	ans := pack(t, answerFor(query, 2, true))
	// Cut inside the second A record.
	if _, err := PrepareAnswer(nil, ans[:len(ans)-11-2], q); !errors.Is(err, ErrMalformed) {
		t.Errorf("cut record: got %v, want ErrMalformed", err)
	}
	// Answer count overstated by one: miekg/dns reads what is there.
	bad := bytes.Clone(ans)
	bad[7]++
	got, err := PrepareAnswer(nil, bad, q)
	if err != nil {
		t.Fatalf("overstated count: %v", err)
	}
	if m := unpack(t, got); len(m.Answer) != 2 || countOPT(m) != 0 {
		t.Errorf("got %v", m)
	}
	// A compression loop in an answer record that fits passes unchanged:
	// records are not parsed unless something must change.
	loop := cat(header(0x1234, 0x8180, 1, 1, 0, 0), ans[12:12+17], mustHex("c01d 0001 0001 00000000 0004 01020304"))
	if got, err := PrepareAnswer(nil, loop, q); err != nil || !bytes.Equal(got, loop) {
		t.Errorf("compression loop, fits: got %x, %v; want it unchanged", got, err)
	}
	// The same loop in an answer that must be truncated: still not parsed,
	// cut on record boundaries.
	big := cat(loop, bytes.Repeat(mustHex("c00c 0001 0001 00000000 0004 01020304"), 40))
	big[7] = 41
	got, err = PrepareAnswer(nil, big, q)
	if want := cat(header(0x1234, 0x8380, 1, 30, 0, 0), big[12:12+17+30*16]); err != nil || !bytes.Equal(got, want) {
		t.Errorf("compression loop, truncated: got %x, %v; want %x", got, err, want)
	}
	// With an OPT that is not the last record, the answer goes through
	// miekg/dns, which rejects the loop.
	mid := cat(big[:12+17+16], mustHex("00 0029 04d0 00000000 0000"), big[12+17+16:])
	mid[7], mid[11] = 1, 41
	if _, err := PrepareAnswer(nil, mid, q); !errors.Is(err, ErrMalformed) {
		t.Errorf("compression loop, OPT first: got %v, want ErrMalformed", err)
	}
	// An OPT last after the loop is stripped on the wire.
	withOPT := cat(loop, mustHex("00 0029 04d0 00000000 0000"))
	withOPT[11] = 1
	if got, err := PrepareAnswer(nil, withOPT, q); err != nil || !bytes.Equal(got, loop) {
		t.Errorf("compression loop, OPT: got %x, %v; want %x", got, err, loop)
	}
}

func TestPrepareAnswerInPlace(t *testing.T) {
	for _, opt := range []bool{true, false} {
		query := newQuery("example.com.", dns.TypeA)
		if opt {
			withOPT(query, 1232, true)
		}
		q := mustPrepare(t, pack(t, query), DefaultPayloadSize)
		for _, n := range []int{3, 200} {
			ans := pack(t, answerFor(query, n, true))
			want, err := PrepareAnswer(nil, ans, q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := PrepareAnswer(ans[:0], ans, q)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("OPT %v, %d records: got %x, want %x", opt, n, got, want)
			}
		}
	}
}

func TestPrepareAnswerAllocs(t *testing.T) {
	qOPT := withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true)
	qNo := newQuery("www.example.com.", dns.TypeA)
	for _, tc := range []struct {
		name  string
		query *dns.Msg
	}{{"fits", qOPT}, {"strip", qNo}} {
		q := mustPrepare(t, pack(t, tc.query), DefaultPayloadSize)
		ans := pack(t, answerFor(tc.query, 4, true))
		buf := make([]byte, 0, 512)
		n := testing.AllocsPerRun(100, func() {
			if _, err := PrepareAnswer(buf, ans, q); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("%s: got %v allocations, want 0", tc.name, n)
		}
	}
}

// randAnswer builds a random answer to m.
func randAnswer(r *rand.Rand, m *dns.Msg) *dns.Msg {
	a := new(dns.Msg)
	a.SetReply(m)
	a.Compress = r.IntN(4) > 0
	a.RecursionAvailable = true
	a.AuthenticatedData = r.IntN(4) == 0
	a.Rcode = []int{dns.RcodeSuccess, dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeServerFailure}[r.IntN(4)]
	name := m.Question[0].Name
	hdr := func(n string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: n, Rrtype: t, Class: dns.ClassINET, Ttl: r.Uint32N(86400)}
	}
	n := r.IntN(60)
	if r.IntN(4) == 0 {
		n = r.IntN(300)
	}
	for i := range n {
		var rr dns.RR
		switch r.IntN(5) {
		case 0:
			rr = &dns.A{Hdr: hdr(name, dns.TypeA), A: net.IPv4(10, 0, byte(i>>8), byte(i))}
		case 1:
			rr = &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: net.ParseIP("2001:db8::1")}
		case 2:
			rr = &dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: 10, Mx: "mx.example.com."}
		case 3:
			rr = &dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: []string{string(bytes.Repeat([]byte{'t'}, r.IntN(200)))}}
		case 4:
			rr = &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: "alias.example.net."}
		}
		a.Answer = append(a.Answer, rr)
	}
	for range r.IntN(4) {
		a.Ns = append(a.Ns, &dns.NS{Hdr: hdr("example.com.", dns.TypeNS), Ns: "ns.example.com."})
	}
	for range r.IntN(4) {
		a.Extra = append(a.Extra, &dns.A{Hdr: hdr("ns.example.com.", dns.TypeA), A: net.IPv4(192, 0, 2, 1)})
	}
	if r.IntN(4) > 0 {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		if r.IntN(2) == 0 {
			opt.SetDo()
		}
		if r.IntN(4) == 0 {
			opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, r.IntN(500))})
		}
		if r.IntN(3) == 0 {
			// The resolver's own cookie, which the client never sees.
			opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "f1f2f3f4f5f6f7f8e1e2e3e4e5e6e7e8"})
		}
		if r.IntN(6) == 0 {
			opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e73"})
		}
		if r.IntN(6) == 0 {
			a.Rcode = dns.RcodeBadCookie
		}
		i := len(a.Extra)
		if r.IntN(5) == 0 {
			i = r.IntN(len(a.Extra) + 1)
		}
		a.Extra = append(a.Extra[:i], append([]dns.RR{opt}, a.Extra[i:]...)...)
	}
	return a
}

// TestPrepareAnswerPathsAgree checks PrepareAnswer against the *dns.Msg
// path on many generated answers.
func TestPrepareAnswerPathsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cookies := NewCookies([16]byte{1, 2, 3})
	const n = 3000
	var passed, truncated, stamped int
	for range n {
		m := randQuery(r)
		if m.IsTsig() != nil {
			m.Extra = m.Extra[:len(m.Extra)-1]
		}
		m.Rcode = 0
		q := mustPrepare(t, pack(t, m), DefaultPayloadSize)
		if r.IntN(4) > 0 {
			cookies.Stamp(&q, netip.AddrFrom4([4]byte{127, 0, 0, byte(r.IntN(3))}), time.Unix(r.Int64N(1<<40), 0))
		}
		if q.cookie == cookieStamped {
			stamped++
		}
		if r.IntN(8) == 0 {
			q.Limit = MaxTCPSize
		}
		a := randAnswer(r, m)
		ans, err := a.Pack()
		if err != nil {
			t.Fatalf("packing %v: %v", a, err)
		}
		got, err := PrepareAnswer(nil, ans, q)
		if err != nil {
			t.Fatalf("PrepareAnswer(%x): %v", ans, err)
		}
		ref, err := prepareAnswerMsg(nil, ans, q, q.Limit)
		if err != nil {
			t.Fatalf("msg path(%x): %v", ans, err)
		}
		// A compressed upstream answer gives what Truncate gives; an
		// uncompressed one may keep fewer records (none are recompressed).
		cg, ok1 := canonical(got)
		cr, ok2 := canonical(ref)
		if a.Compress && (!ok1 || !ok2 || !bytes.Equal(cg, cr)) {
			t.Fatalf("answer %x, query %+v:\ngot %x\nref %x", ans, q, got, ref)
		}
		checkAnswer(t, ans, got, q)
		// In place, and into a buffer with room, give the same.
		in := bytes.Clone(ans)
		if inPlace, err := PrepareAnswer(in[:0], in, q); err != nil || !bytes.Equal(inPlace, got) {
			t.Fatalf("in place: got %x, %v; want %x", inPlace, err, got)
		}
		roomy := make([]byte, 3, 70000)
		if more, err := PrepareAnswer(roomy, ans, q); err != nil || !bytes.Equal(more[3:], got) {
			t.Fatalf("with room: got %x, %v; want %x", more, err, got)
		}
		out := unpack(t, got)
		if out.Truncated {
			truncated++
		}
		if bytes.Equal(got, ans) {
			passed++
		}
	}
	t.Logf("%d answers: %d passed unchanged, %d truncated, %d to stamped queries", n, passed, truncated, stamped)
	if passed < n/5 || truncated < n/20 || stamped < n/20 {
		t.Errorf("poor coverage: %d unchanged, %d truncated, %d stamped", passed, truncated, stamped)
	}
}

// records lists the records of m in section order, without the OPT records
// of the additional section, and without those elsewhere unless keepOdd;
// those are listed without their COOKIE options, which PrepareAnswer
// removes wherever they are.
func records(m *dns.Msg, keepOdd bool) []string {
	var s []string
	for i, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			opt, isOPT := rr.(*dns.OPT)
			switch {
			case !isOPT:
				s = append(s, rr.String())
			case keepOdd && i < 2:
				o := *opt
				o.Option = slices.DeleteFunc(slices.Clone(o.Option), func(e dns.EDNS0) bool {
					return e.Option() == dns.EDNS0COOKIE
				})
				s = append(s, o.String())
			}
		}
	}
	return s
}

// checkAnswer checks what PrepareAnswer promises about got, made from the
// well-formed answer ans.
func checkAnswer(tb testing.TB, ans, got []byte, q Query) {
	tb.Helper()
	if err := answerProblem(ans, got, q); err != nil {
		tb.Fatal(err)
	}
}

// answerProblem describes how got, made from the well-formed answer ans,
// breaks a promise of PrepareAnswer, or returns nil.
func answerProblem(ans, got []byte, q Query) error {
	limit := min(max(q.Limit, MinUDPSize), MaxTCPSize)
	if len(got) > limit {
		return fmt.Errorf("got %d bytes, limit %d", len(got), limit)
	}
	in, out := new(dns.Msg), new(dns.Msg)
	if err := in.Unpack(ans); err != nil {
		return fmt.Errorf("unpacking the answer: %v", err)
	}
	if err := out.Unpack(got); err != nil {
		return fmt.Errorf("unpacking %x: %v", got, err)
	}
	if out.Id != in.Id || !out.Response || len(out.Question) != len(in.Question) ||
		len(in.Question) == 1 && out.Question[0] != in.Question[0] {
		return fmt.Errorf("got %v, from %v", out.MsgHdr, in.MsgHdr)
	}
	if !q.HadOPT && countOPT(out) != 0 {
		return fmt.Errorf("OPT sent to a client without one: %v", out)
	}
	if err := cookieProblem(in, out, q, limit); err != nil {
		return err
	}
	wantRcode := in.Rcode
	if !q.HadOPT && wantRcode > 0xF {
		wantRcode = dns.RcodeServerFailure
	}
	if out.Rcode != wantRcode {
		return fmt.Errorf("got rcode %d, want %d", out.Rcode, wantRcode)
	}
	// An OPT record outside the additional section is an odd record to a
	// client with OPT, and removed for one without.
	odd := q.HadOPT
	inRRs, outRRs := records(in, odd), records(out, odd)
	if len(outRRs) > len(inRRs) || !slices.Equal(outRRs, inRRs[:len(outRRs)]) {
		return fmt.Errorf("records kept are not a prefix:\n%v\nof\n%v", outRRs, inRRs)
	}
	k := len(outRRs)
	inAN, inNS := len(records(&dns.Msg{Answer: in.Answer}, odd)), len(records(&dns.Msg{Answer: in.Ns}, odd))
	outAN, outNS := len(records(&dns.Msg{Answer: out.Answer}, odd)), len(records(&dns.Msg{Answer: out.Ns}, odd))
	if outAN != min(k, inAN) || outNS != min(k-outAN, inNS) {
		return fmt.Errorf("records moved between sections: %v from %v", out, in)
	}
	if k < len(inRRs) && !out.Truncated {
		return fmt.Errorf("records dropped without TC: %d of %d", k, len(inRRs))
	}
	if !in.Truncated && k == len(inRRs) && out.Truncated {
		return fmt.Errorf("TC set but nothing dropped: %v\nfrom %v", out, in)
	}
	return nil
}

// cookieProblem describes how the OPT record of out, made from in for the
// query q with the given limit, breaks the cookie rules of PrepareAnswer:
// for a client with OPT, the OPT record of in (or a new one if q is stamped)
// with its COOKIE options removed and, if q is stamped, the proxy's added
// last; all of its options may go when they do not fit (Truncate).
func cookieProblem(in, out *dns.Msg, q Query, limit int) error {
	if !q.HadOPT {
		if hasCookie(out) {
			return fmt.Errorf("cookie sent to a client without OPT: %v", out)
		}
		return nil
	}
	stamped := q.cookie == cookieStamped
	inOPT, outOPT := in.IsEdns0(), out.IsEdns0()
	if (outOPT == nil) != (inOPT == nil && !stamped) {
		return fmt.Errorf("got OPT %v, answer had %v, stamped %v", outOPT, inOPT, stamped)
	}
	if outOPT == nil {
		return nil
	}
	var want []dns.EDNS0 // the options out should have
	if inOPT != nil {
		for _, o := range inOPT.Option {
			if o.Option() != dns.EDNS0COOKIE {
				want = append(want, o)
			}
		}
	}
	if stamped {
		want = append(want, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(q.cookieBytes[:])})
	}
	got := optString(outOPT)
	ref := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}, Option: want}
	if got == optString(ref) {
		return nil
	}
	bare := dns.Msg{MsgHdr: in.MsgHdr, Question: in.Question}
	if got == "" && bare.Len()+dns.Len(ref) > limit {
		return nil // Truncate cleared the options
	}
	return fmt.Errorf("got options %s, want %s", got, optString(ref))
}
