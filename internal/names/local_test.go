package names

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// localCase is a query and the answer Local must give.
type localCase struct {
	q      q
	rcode  int
	answer []string // records in presentation form (dns.NewRR syntax)
	ns     []string
}

// checkLocal runs Local on c's query and checks the answer field by field.
func checkLocal(t *testing.T, p *Policy, c localCase, ednsSize uint16) {
	t.Helper()
	pkt := c.q.pack(t)
	prefix := []byte("prefix")
	out, why, ok := p.Local(slices.Clone(prefix), pkt, ednsSize)
	if !ok {
		t.Fatalf("Local(%s %s) not answered locally", c.q.name, dns.TypeToString[c.q.qtype])
	}
	if why == "" {
		t.Errorf("no reason given")
	}
	if !bytes.HasPrefix(out, prefix) {
		t.Fatalf("dst not kept: %q", out)
	}
	out = out[len(prefix):]
	m := unpack(t, out)
	if m.Id != 0xBEEF || !m.Response || m.Opcode != dns.OpcodeQuery || m.Truncated || m.Zero || m.AuthenticatedData {
		t.Errorf("header %+v: want ID beef, QR, QUERY, no TC, Z or AD", m.MsgHdr)
	}
	wantRA := c.q.qtype != dns.TypeAXFR && c.q.qtype != dns.TypeIXFR
	if m.RecursionDesired != c.q.rd || m.CheckingDisabled != c.q.cd || m.RecursionAvailable != wantRA {
		t.Errorf("RD %v CD %v RA %v, want %v, %v, %v", m.RecursionDesired, m.CheckingDisabled,
			m.RecursionAvailable, c.q.rd, c.q.cd, wantRA)
	}
	wantAA := c.rcode == dns.RcodeSuccess || c.rcode == dns.RcodeNameError
	if m.Authoritative != wantAA {
		t.Errorf("AA %v, want %v", m.Authoritative, wantAA)
	}
	if m.Rcode != c.rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[c.rcode])
	}
	// The question, byte for byte (so its case).
	end, ok := (&wireName{}).parse(pkt, 12)
	if !ok {
		t.Fatalf("the test query's name does not parse")
	}
	if qEnd := end + 4; !bytes.Equal(out[12:qEnd], pkt[12:qEnd]) {
		t.Errorf("question %x, want %x", out[12:qEnd], pkt[12:qEnd])
	}
	if got, want := rrs(m.Answer), rrs(mustRR(t, c.answer...)); !slices.Equal(got, want) {
		t.Errorf("answer section:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := rrs(m.Ns), rrs(mustRR(t, c.ns...)); !slices.Equal(got, want) {
		t.Errorf("authority section:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	opt := m.IsEdns0()
	switch {
	case !c.q.edns && len(m.Extra) != 0:
		t.Errorf("additional section %v, want empty (no OPT in the query)", m.Extra)
	case c.q.edns && (len(m.Extra) != 1 || opt == nil):
		t.Errorf("additional section %v, want only an OPT", m.Extra)
	case c.q.edns:
		if opt.UDPSize() != max(ednsSize, 512) || opt.Do() != c.q.do || opt.Version() != 0 || len(opt.Option) != 0 {
			t.Errorf("OPT size %d DO %v version %d options %v, want %d, %v, 0, none",
				opt.UDPSize(), opt.Do(), opt.Version(), opt.Option, max(ednsSize, 512), c.q.do)
		}
	}
}

func TestLocalAnswers(t *testing.T) {
	p := mustPolicy(t, Config{})
	loop6 := ptrName(t, "::1")
	zero6 := ptrName(t, "::")
	onion := "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion."
	cases := []localCase{
		// Tor's names.
		{q: q{name: onion, qtype: dns.TypeA, rd: true}, rcode: dns.RcodeNameError, ns: []string{soa("onion.")}},
		{q: q{name: "www." + onion, qtype: dns.TypeAAAA}, rcode: dns.RcodeNameError, ns: []string{soa("onion.")}},
		{q: q{name: "onion.", qtype: dns.TypeSOA}, answer: []string{soa("onion.")}},
		{q: q{name: "onion.", qtype: dns.TypeNS}, answer: []string{"onion. 10800 IN NS localhost."}},
		{q: q{name: "onion.", qtype: dns.TypeA}, ns: []string{soa("onion.")}},
		{q: q{name: "onion.", qtype: dns.TypeDS}, ns: []string{soa("onion.")}},
		{q: q{name: "onion.", qtype: dns.TypeANY}, ns: []string{soa("onion.")}},
		{q: q{name: "www.torproject.org.exit.", qtype: dns.TypeA}, rcode: dns.RcodeNameError, ns: []string{soa("exit.")}},
		// localhost: positive for A and AAAA, NODATA otherwise.
		{q: q{name: "localhost.", qtype: dns.TypeA, rd: true}, answer: []string{"localhost. 10800 IN A 127.0.0.1"}},
		{q: q{name: "localhost.", qtype: dns.TypeAAAA}, answer: []string{"localhost. 10800 IN AAAA ::1"}},
		{q: q{name: "localhost.", qtype: dns.TypeMX}, ns: []string{soa("localhost.")}},
		{q: q{name: "localhost.", qtype: dns.TypeANY}, ns: []string{soa("localhost.")}},
		{q: q{name: "foo.localhost.", qtype: dns.TypeA}, answer: []string{"foo.localhost. 10800 IN A 127.0.0.1"}},
		{q: q{name: "a.b.localhost.", qtype: dns.TypeAAAA}, answer: []string{"a.b.localhost. 10800 IN AAAA ::1"}},
		{q: q{name: "foo.localhost.", qtype: dns.TypeSOA}, ns: []string{soa("localhost.")}},
		{q: q{name: "foo.localhost.", qtype: dns.TypeTXT}, ns: []string{soa("localhost.")}},
		{q: q{name: "foo.localhost.", qtype: dns.TypeANY}, ns: []string{soa("localhost.")}},
		// Local network names.
		{q: q{name: "printer.local.", qtype: dns.TypeA}, rcode: dns.RcodeNameError, ns: []string{soa("local.")}},
		{q: q{name: "db.corp.internal.", qtype: dns.TypeA}, rcode: dns.RcodeNameError, ns: []string{soa("internal.")}},
		{q: q{name: "nas.home.arpa.", qtype: dns.TypeAAAA}, rcode: dns.RcodeNameError, ns: []string{soa("home.arpa.")}},
		{q: q{name: "home.arpa.", qtype: dns.TypeSOA}, answer: []string{soa("home.arpa.")}},
		{q: q{name: "x.invalid.", qtype: dns.TypeA}, rcode: dns.RcodeNameError, ns: []string{soa("invalid.")}},
		{q: q{name: "name.gnu.alt.", qtype: dns.TypeA}, rcode: dns.RcodeNameError, ns: []string{soa("alt.")}},
		{q: q{name: "_dns.resolver.arpa.", qtype: dns.TypeSVCB}, rcode: dns.RcodeNameError, ns: []string{soa("resolver.arpa.")}},
		{q: q{name: "default.service.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("service.arpa.")}},
		// Reverse zones.
		{q: q{name: "1.1.168.192.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("168.192.in-addr.arpa.")}},
		{q: q{name: "4.3.2.10.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("10.in-addr.arpa.")}},
		{q: q{name: "1.0.16.172.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("16.172.in-addr.arpa.")}},
		{q: q{name: "1.0.31.172.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("31.172.in-addr.arpa.")}},
		{q: q{name: "1.0.64.100.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("64.100.in-addr.arpa.")}},
		{q: q{name: "1.0.127.100.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("127.100.in-addr.arpa.")}},
		{q: q{name: "254.169.254.169.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("254.169.in-addr.arpa.")}},
		{q: q{name: "0.0.0.0.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("0.in-addr.arpa.")}},
		{q: q{name: "1.2.0.192.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("2.0.192.in-addr.arpa.")}},
		{q: q{name: "1.100.51.198.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("100.51.198.in-addr.arpa.")}},
		{q: q{name: "1.113.0.203.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("113.0.203.in-addr.arpa.")}},
		{q: q{name: "255.255.255.255.in-addr.arpa.", qtype: dns.TypePTR}, ns: []string{soa("255.255.255.255.in-addr.arpa.")}},
		{q: q{name: "1.0.0.127.in-addr.arpa.", qtype: dns.TypePTR}, answer: []string{"1.0.0.127.in-addr.arpa. 10800 IN PTR localhost."}},
		{q: q{name: "1.0.0.127.in-addr.arpa.", qtype: dns.TypeA}, ns: []string{soa("127.in-addr.arpa.")}},
		{q: q{name: "2.0.0.127.in-addr.arpa.", qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("127.in-addr.arpa.")}},
		{q: q{name: "127.in-addr.arpa.", qtype: dns.TypeNS}, answer: []string{"127.in-addr.arpa. 10800 IN NS localhost."}},
		{q: q{name: loop6, qtype: dns.TypePTR}, answer: []string{loop6 + " 10800 IN PTR localhost."}},
		{q: q{name: loop6, qtype: dns.TypeANY}, ns: []string{soa(loop6)}},
		{q: q{name: loop6, qtype: dns.TypeNS}, answer: []string{loop6 + " 10800 IN NS localhost."}},
		{q: q{name: "x." + loop6, qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa(loop6)}},
		{q: q{name: zero6, qtype: dns.TypePTR}, ns: []string{soa(zero6)}},
		{q: q{name: ptrName(t, "fd12:3456::1"), qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("d.f.ip6.arpa.")}},
		{q: q{name: ptrName(t, "fc00::1"), qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("c.f.ip6.arpa.")}},
		{q: q{name: ptrName(t, "fe80::1"), qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("8.e.f.ip6.arpa.")}},
		{q: q{name: ptrName(t, "febf::1"), qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("b.e.f.ip6.arpa.")}},
		{q: q{name: ptrName(t, "2001:db8::1"), qtype: dns.TypePTR}, rcode: dns.RcodeNameError, ns: []string{soa("8.b.d.0.1.0.0.2.ip6.arpa.")}},
		// Letter case: the question comes back as sent, and the owner
		// names point into it.
		{q: q{name: "WWW.Example.ONION.", qtype: dns.TypeA}, rcode: dns.RcodeNameError, ns: []string{soa("ONION.")}},
		{q: q{name: "Foo.LocalHost.", qtype: dns.TypeA}, answer: []string{"Foo.LocalHost. 10800 IN A 127.0.0.1"}},
		// Header bits and EDNS.
		{q: q{name: onion, qtype: dns.TypeA, rd: true, cd: true, edns: true, size: 4096, do: true, cookie: true},
			rcode: dns.RcodeNameError, ns: []string{soa("onion.")}},
		{q: q{name: "localhost.", qtype: dns.TypeA, edns: true, size: 1232}, answer: []string{"localhost. 10800 IN A 127.0.0.1"}},
		{q: q{name: onion, qtype: dns.TypeA, edns: true, size: 1232, ver: 1}, rcode: dns.RcodeBadVers},
		// Other classes and zone transfers: REFUSED, never forwarded.
		{q: q{name: onion, qtype: dns.TypeTXT, qclass: dns.ClassCHAOS}, rcode: dns.RcodeRefused},
		{q: q{name: "localhost.", qtype: dns.TypeA, qclass: dns.ClassANY}, rcode: dns.RcodeRefused},
		{q: q{name: "onion.", qtype: dns.TypeAXFR, rd: true}, rcode: dns.RcodeRefused},
		{q: q{name: "10.in-addr.arpa.", qtype: dns.TypeIXFR, edns: true, size: 512}, rcode: dns.RcodeRefused},
	}
	for _, c := range cases {
		t.Run(c.q.name+"/"+dns.TypeToString[c.q.qtype], func(t *testing.T) {
			checkLocal(t, p, c, 1252)
		})
	}
	t.Run("small EDNS size", func(t *testing.T) {
		c := localCase{q: q{name: onion, qtype: dns.TypeA, edns: true, size: 4096}, rcode: dns.RcodeNameError, ns: []string{soa("onion.")}}
		checkLocal(t, p, c, 0) // answers advertise at least 512
	})
}

// TestLocalForwarded: names that go upstream, and the suffixes forwarded by
// the user.
func TestLocalForwarded(t *testing.T) {
	plain := mustPolicy(t, Config{})
	forwarding := mustPolicy(t, Config{Forward: []string{"corp.internal", "10.IN-ADDR.ARPA.", "lab.test", "local"}})
	everything := mustPolicy(t, Config{Forward: []string{"."}})
	upstream := []string{
		"example.com.", "www.test.", "test.", "onion.example.com.", "xonion.", "onionx.", "localhost.example.",
		"local.example.", "localhostx.", "arpa.", "in-addr.arpa.", "172.in-addr.arpa.", "ip6.arpa.", ".",
		"e.f.ip6.arpa.", "f.ip6.arpa.", "ipv4only.arpa.", "example.",
		"1.0.15.172.in-addr.arpa.", "1.0.32.172.in-addr.arpa.", "1.0.63.100.in-addr.arpa.",
		"1.0.128.100.in-addr.arpa.", "1.0.0.1.in-addr.arpa.", "1.2.0.193.in-addr.arpa.",
		ptrName(t, "fec0::1"), ptrName(t, "2001:db9::1"), ptrName(t, "::2"),
	}
	for _, name := range upstream {
		if out, why, ok := plain.Local(nil, q{name: name, qtype: dns.TypeA}.pack(t), 1252); ok || out != nil || why != "" {
			t.Errorf("%s answered locally (%q), want forwarded", name, why)
		}
	}
	for _, c := range []struct {
		name  string
		local bool
	}{
		{"db.corp.internal.", false},
		{"CORP.INTERNAL.", false},
		{"corp.internal.", false},
		{"other.internal.", true},
		{"internal.", true},
		{"xcorp.internal.", true},
		{"4.3.2.10.in-addr.arpa.", false},
		{"1.1.168.192.in-addr.arpa.", true},
		{"printer.local.", false},
		{"local.", false},
		{"x.onion.", true},
	} {
		_, _, ok := forwarding.Local(nil, q{name: c.name, qtype: dns.TypeA}.pack(t), 1252)
		if ok != c.local {
			t.Errorf("with forwarded suffixes, %s answered locally: %v, want %v", c.name, ok, c.local)
		}
		if _, _, ok := everything.Local(nil, q{name: c.name, qtype: dns.TypeA}.pack(t), 1252); ok {
			t.Errorf("with \".\" forwarded, %s answered locally", c.name)
		}
	}
}

// TestLocalMalformed: queries that are not valid standard queries are left to
// the caller's checks, dst untouched.
func TestLocalMalformed(t *testing.T) {
	p := mustPolicy(t, Config{})
	good := q{name: "x.onion.", qtype: dns.TypeA}.pack(t)
	if _, _, ok := p.Local(nil, good, 1252); !ok {
		t.Fatal("the valid query is not answered")
	}
	withOPT := q{name: "x.onion.", qtype: dns.TypeA, edns: true, size: 1232}.pack(t)
	edit := func(b []byte, f func([]byte) []byte) []byte { return f(slices.Clone(b)) }
	cases := map[string][]byte{
		"empty":        nil,
		"header only":  good[:12],
		"cut question": good[:len(good)-1],
		"trailing":     append(slices.Clone(good), 0),
		"QR":           edit(good, func(b []byte) []byte { b[2] |= 0x80; return b }),
		"NOTIFY":       edit(good, func(b []byte) []byte { b[2] |= 4 << 3; return b }),
		"QDCOUNT 2":    edit(good, func(b []byte) []byte { b[5] = 2; return b }),
		"QDCOUNT 0":    edit(good, func(b []byte) []byte { b[5] = 0; return b }),
		"ANCOUNT 1":    edit(good, func(b []byte) []byte { b[7] = 1; return b }),
		"NSCOUNT 1":    edit(good, func(b []byte) []byte { b[9] = 1; return b }),
		"ARCOUNT 1":    edit(good, func(b []byte) []byte { b[11] = 1; return b }),
		"compressed":   mustHex("beef 0100 0001 0000 0000 0000 c00c 0001 0001"),
		"bad label":    mustHex("beef 0100 0001 0000 0000 0000 41 00 0001 0001"),
		"two OPTs": edit(withOPT, func(b []byte) []byte {
			b[11] = 2
			return append(b, withOPT[len(withOPT)-11:]...)
		}),
		"OPT not root": edit(good, func(b []byte) []byte {
			b[11] = 1
			return append(b, mustHex("01 61 00 0029 04d0 00000000 0000")...)
		}),
		"OPT overrun": edit(withOPT, func(b []byte) []byte { b[len(b)-1] = 4; return b }),
	}
	for name, pkt := range cases {
		dst := []byte("dst")
		out, why, ok := p.Local(dst, pkt, 1252)
		if ok || why != "" || string(out) != "dst" {
			t.Errorf("%s: Local = %q, %q, %v; want dst unchanged, not answered", name, out, why, ok)
		}
	}
}

func TestLocalZeroAllocs(t *testing.T) {
	p := mustPolicy(t, Config{Forward: []string{"corp.internal", "lab.test"}})
	buf := make([]byte, 0, 512)
	for _, c := range []q{
		{name: "www.example.com.", qtype: dns.TypeA, edns: true, size: 1232},
		{name: "x.onion.", qtype: dns.TypeA, edns: true, size: 1232, do: true},
		{name: "foo.localhost.", qtype: dns.TypeANY},
		{name: "db.corp.internal.", qtype: dns.TypeA},
		{name: ptrName(t, "fe80::1"), qtype: dns.TypePTR},
	} {
		pkt := c.pack(t)
		if n := testing.AllocsPerRun(100, func() { p.Local(buf[:0], pkt, 1252) }); n != 0 {
			t.Errorf("Local(%s) allocates %.1f times, want 0", c.name, n)
		}
	}
}

// TestLocalZones checks the table itself: every zone is answered, with its
// own SOA, and a name one label above it is not.
func TestLocalZones(t *testing.T) {
	p := mustPolicy(t, Config{})
	if n := len(localZones.list); n != 108 {
		t.Errorf("%d local zones, want 108 (10 names, 89 IPv4 reverse zones, 9 IPv6)", n)
	}
	for _, z := range localZones.list {
		m := unpack(t, mustLocal(t, p, q{name: "x." + z.apex, qtype: dns.TypeTXT}))
		wantRcode := dns.RcodeNameError
		if z.loopback {
			wantRcode = dns.RcodeSuccess
		}
		if m.Rcode != wantRcode || len(m.Ns) != 1 || m.Ns[0].String() != mustRR(t, soa(z.apex))[0].String() {
			t.Errorf("x.%s TXT: %s %v, want %s with its SOA", z.apex, dns.RcodeToString[m.Rcode], m.Ns, dns.RcodeToString[wantRcode])
		}
		if z.apex == "localhost." {
			continue
		}
		parent := z.apex[strings.Index(z.apex, ".")+1:]
		if _, _, ok := p.Local(nil, q{name: parent, qtype: dns.TypeTXT}.pack(t), 1252); ok {
			t.Errorf("%s (above %s) answered locally", parent, z.apex)
		}
	}
}

func mustLocal(t *testing.T, p *Policy, c q) []byte {
	t.Helper()
	out, _, ok := p.Local(nil, c.pack(t), 1252)
	if !ok {
		t.Fatalf("%s not answered locally", c.name)
	}
	return out
}
