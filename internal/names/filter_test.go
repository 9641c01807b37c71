package names

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// reply builds an upstream answer: RD RA AD set, compressed.
func reply(tb testing.TB, qname string, qtype uint16, answer, ns, extra []string) *dns.Msg {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.Id = 0xBEEF
	m.Response = true
	m.RecursionAvailable = true
	m.AuthenticatedData = true
	m.Answer = mustRR(tb, answer...)
	m.Ns = mustRR(tb, ns...)
	m.Extra = mustRR(tb, extra...)
	m.Compress = true
	return m
}

// rrsig returns an RRSIG record covering rtype at owner (signature bytes
// are not checked by anything here).
func rrsig(owner, rtype string) string {
	return owner + " 300 IN RRSIG " + rtype + " 13 3 300 20300101000000 20200101000000 12345 lab.test. " +
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
}

func TestFilter(t *testing.T) {
	p := mustPolicy(t, Config{FilterInternal: true, Forward: []string{"corp.internal"}})
	withOPT := func(m *dns.Msg) *dns.Msg { m.SetEdns0(1232, true); return m }
	cases := []struct {
		name  string
		in    *dns.Msg
		want  *dns.Msg // nil: unchanged, byte for byte
		addrs []string
		sigs  int
	}{
		{
			name: "lab rebind: only the public address survives",
			in: withOPT(reply(t, "rebind.lab.test.", dns.TypeA, []string{
				"rebind.lab.test. 60 IN A 10.1.2.3", "rebind.lab.test. 60 IN A 192.168.1.1",
				"rebind.lab.test. 60 IN A 127.0.0.1", "rebind.lab.test. 60 IN A 20.84.0.11"}, nil, nil)),
			want:  withOPT(reply(t, "rebind.lab.test.", dns.TypeA, []string{"rebind.lab.test. 60 IN A 20.84.0.11"}, nil, nil)),
			addrs: []string{"10.1.2.3", "192.168.1.1", "127.0.0.1"},
		},
		{
			name: "lab rebind6: empty NOERROR answer, authority kept",
			in: reply(t, "rebind6.lab.test.", dns.TypeAAAA,
				[]string{"rebind6.lab.test. 60 IN AAAA fe80::1", "rebind6.lab.test. 60 IN AAAA fd00::1"},
				[]string{"lab.test. 60 IN NS ns.lab.test."}, nil),
			want:  reply(t, "rebind6.lab.test.", dns.TypeAAAA, nil, []string{"lab.test. 60 IN NS ns.lab.test."}, nil),
			addrs: []string{"fe80::1", "fd00::1"},
		},
		{
			name: "CNAME chain kept, private address removed",
			in: reply(t, "www.evil.example.", dns.TypeA, []string{
				"www.evil.example. 60 IN CNAME a.evil.example.net.",
				"a.evil.example.net. 60 IN CNAME b.evil.example.org.",
				"b.evil.example.org. 60 IN A 172.16.5.4"}, nil, nil),
			want: reply(t, "www.evil.example.", dns.TypeA, []string{
				"www.evil.example. 60 IN CNAME a.evil.example.net.",
				"a.evil.example.net. 60 IN CNAME b.evil.example.org."}, nil, nil),
			addrs: []string{"172.16.5.4"},
		},
		{
			name: "a CNAME into a forwarded suffix does not exempt a public name",
			in: reply(t, "evil.example.", dns.TypeA, []string{
				"evil.example. 60 IN CNAME printer.corp.internal.",
				"printer.corp.internal. 60 IN A 10.0.0.5"}, nil, nil),
			want:  reply(t, "evil.example.", dns.TypeA, []string{"evil.example. 60 IN CNAME printer.corp.internal."}, nil, nil),
			addrs: []string{"10.0.0.5"},
		},
		{
			name: "every section",
			in: reply(t, "example.com.", dns.TypeMX,
				[]string{"example.com. 60 IN MX 10 mail.example.com."},
				[]string{"example.com. 60 IN NS ns1.example.com.", "example.com. 60 IN A 100.64.0.1"},
				[]string{"mail.example.com. 60 IN A 192.168.0.25", "mail.example.com. 60 IN AAAA 2001:db8::25",
					"ns1.example.com. 60 IN A 198.51.100.53"}),
			want: reply(t, "example.com.", dns.TypeMX,
				[]string{"example.com. 60 IN MX 10 mail.example.com."},
				[]string{"example.com. 60 IN NS ns1.example.com."},
				[]string{"mail.example.com. 60 IN AAAA 2001:db8::25", "ns1.example.com. 60 IN A 198.51.100.53"}),
			addrs: []string{"100.64.0.1", "192.168.0.25"},
		},
		{
			name: "IPv6 forms of internal IPv4 addresses",
			in: reply(t, "v6.example.", dns.TypeAAAA, []string{
				"v6.example. 60 IN AAAA ::ffff:10.0.0.1", "v6.example. 60 IN AAAA ::ffff:8.8.8.8",
				"v6.example. 60 IN AAAA 64:ff9b::a00:1", "v6.example. 60 IN AAAA 64:ff9b::808:808",
				"v6.example. 60 IN AAAA 2002:c0a8:101::1", "v6.example. 60 IN AAAA 2002:808:808::1",
				"v6.example. 60 IN AAAA ::127.0.0.1", "v6.example. 60 IN AAAA ::", "v6.example. 60 IN AAAA fec0::1",
				"v6.example. 60 IN AAAA 2606:4700::1111"}, nil, nil),
			want: reply(t, "v6.example.", dns.TypeAAAA, []string{
				"v6.example. 60 IN AAAA ::ffff:8.8.8.8", "v6.example. 60 IN AAAA 64:ff9b::808:808",
				"v6.example. 60 IN AAAA 2002:808:808::1", "v6.example. 60 IN AAAA 2606:4700::1111"}, nil, nil),
			addrs: []string{"::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:c0a8:101::1", "::7f00:1", "::", "fec0::1"},
		},
		{
			name: "RRSIG of a changed RRset removed, others kept",
			in: withOPT(reply(t, "www.signed.example.", dns.TypeA, []string{
				"www.signed.example. 60 IN CNAME host.signed.example.", rrsig("www.signed.example.", "CNAME"),
				"host.signed.example. 60 IN A 1.2.3.4", "host.signed.example. 60 IN A 169.254.169.254",
				rrsig("host.signed.example.", "A")}, nil, nil)),
			want: withOPT(reply(t, "www.signed.example.", dns.TypeA, []string{
				"www.signed.example. 60 IN CNAME host.signed.example.", rrsig("www.signed.example.", "CNAME"),
				"host.signed.example. 60 IN A 1.2.3.4"}, nil, nil)),
			addrs: []string{"169.254.169.254"},
			sigs:  1,
		},
		{
			name: "SVCB and HTTPS address hints",
			in: reply(t, "svc.example.", dns.TypeHTTPS, []string{
				"svc.example. 60 IN HTTPS 1 . alpn=h2 ipv4hint=1.2.3.4,10.9.8.7",
				"svc.example. 60 IN HTTPS 2 . ipv6hint=2001:db8::1,fd00::7",
				"svc.example. 60 IN HTTPS 3 . ipv4hint=1.2.3.4 ipv6hint=2001:db8::1",
				"_dns.svc.example. 60 IN SVCB 1 svc.example. ipv4hint=127.0.0.53"}, nil, nil),
			want: reply(t, "svc.example.", dns.TypeHTTPS, []string{
				"svc.example. 60 IN HTTPS 3 . ipv4hint=1.2.3.4 ipv6hint=2001:db8::1"}, nil, nil),
			addrs: []string{"10.9.8.7", "fd00::7", "127.0.0.53"},
		},
		{
			name: "0.0.0.0 and broadcast",
			in: reply(t, "null.example.", dns.TypeA, []string{
				"null.example. 60 IN A 0.0.0.0", "null.example. 60 IN A 255.255.255.255",
				"null.example. 60 IN A 224.0.0.251", "null.example. 60 IN A 192.0.2.1"}, nil, nil),
			want: reply(t, "null.example.", dns.TypeA, []string{
				"null.example. 60 IN A 224.0.0.251", "null.example. 60 IN A 192.0.2.1"}, nil, nil),
			addrs: []string{"0.0.0.0", "255.255.255.255"},
		},
		{
			name: "nothing internal",
			in: withOPT(reply(t, "www.example.com.", dns.TypeA, []string{
				"www.example.com. 60 IN CNAME example.com.", "example.com. 60 IN A 93.184.216.34",
				"example.com. 60 IN A 100.128.0.1", "example.com. 60 IN A 172.32.0.1"}, nil, nil)),
		},
		{
			name: "forwarded suffix",
			in:   reply(t, "printer.corp.internal.", dns.TypeA, []string{"printer.corp.internal. 60 IN A 10.0.0.5"}, nil, nil),
		},
		{
			name: "local zone (an upstream answer for localhost is not filtered)",
			in:   reply(t, "localhost.", dns.TypeA, []string{"localhost. 60 IN A 127.0.0.1"}, nil, nil),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := pack(t, c.in)
			if c.name != "nothing internal" && !bytes.Contains(in, []byte{0xC0, 0x0C}) {
				t.Fatalf("the test answer is not compressed")
			}
			out, rm, err := p.Filter([]byte("dst"), in)
			if err != nil {
				t.Fatalf("Filter: %v", err)
			}
			if !bytes.HasPrefix(out, []byte("dst")) {
				t.Fatalf("dst not kept")
			}
			out = out[3:]
			if c.want == nil {
				if !bytes.Equal(out, in) || rm.Name != "" || rm.Addrs != nil || rm.Signatures != 0 {
					t.Fatalf("answer changed (%v) or removal reported (%+v), want it unchanged", !bytes.Equal(out, in), rm)
				}
				return
			}
			got := unpack(t, out)
			want := c.want
			want.AuthenticatedData = false
			if got.MsgHdr != want.MsgHdr {
				t.Errorf("header %+v, want %+v", got.MsgHdr, want.MsgHdr)
			}
			if !slices.Equal(got.Question, want.Question) {
				t.Errorf("question %v, want %v", got.Question, want.Question)
			}
			for i, s := range [][2][]dns.RR{{got.Answer, want.Answer}, {got.Ns, want.Ns}, {got.Extra, want.Extra}} {
				if g, w := rrs(s[0]), rrs(s[1]); !slices.Equal(g, w) {
					t.Errorf("section %d:\n%s\nwant\n%s", i+1, strings.Join(g, "\n"), strings.Join(w, "\n"))
				}
			}
			if rm.Name != c.in.Question[0].Name {
				t.Errorf("removal name %q, want %q", rm.Name, c.in.Question[0].Name)
			}
			var addrs []string
			for _, a := range rm.Addrs {
				addrs = append(addrs, a.String())
			}
			if !slices.Equal(addrs, c.addrs) || rm.Signatures != c.sigs {
				t.Errorf("removed %v and %d RRSIG, want %v and %d", addrs, rm.Signatures, c.addrs, c.sigs)
			}
			// In place gives the same bytes.
			inPlace, _, err := p.Filter(in[:0], in)
			if err != nil || !bytes.Equal(inPlace, out) {
				t.Errorf("in place: %x, %v; want %x", inPlace, err, out)
			}
		})
	}
}

// TestFilterOff: without FilterInternal, or with every name forwarded,
// answers pass unchanged.
func TestFilterOff(t *testing.T) {
	in := pack(t, reply(t, "rebind.lab.test.", dns.TypeA, []string{"rebind.lab.test. 60 IN A 10.1.2.3"}, nil, nil))
	for _, cfg := range []Config{{}, {FilterInternal: true, Forward: []string{"."}}, {FilterInternal: true, Forward: []string{"lab.test"}}} {
		out, rm, err := mustPolicy(t, cfg).Filter(nil, in)
		if err != nil || !bytes.Equal(out, in) || len(rm.Addrs) != 0 {
			t.Errorf("%+v: Filter = %x, %+v, %v; want the answer unchanged", cfg, out, rm, err)
		}
	}
	out, rm, err := mustPolicy(t, Config{FilterInternal: true, Forward: []string{"other.test"}}).Filter(nil, in)
	if err != nil || bytes.Equal(out, in) || len(rm.Addrs) != 1 {
		t.Errorf("with another suffix forwarded: Filter = %x, %+v, %v; want the address removed", out, rm, err)
	}
}

// TestFilterTruncated: a truncated answer (TC) that ends inside a record
// keeps its TC bit and the records before the cut, minus internal ones.
func TestFilterTruncated(t *testing.T) {
	p := mustPolicy(t, Config{FilterInternal: true})
	m := reply(t, "big.example.", dns.TypeA, []string{
		"big.example. 60 IN A 1.1.1.1", "big.example. 60 IN A 10.0.0.1", "big.example. 60 IN A 2.2.2.2",
		"big.example. 60 IN A 10.0.0.2"}, nil, nil)
	m.Truncated = true
	full := pack(t, m)
	in := full[:len(full)-6] // the last record cut in its RDATA
	out, rm, err := p.Filter(nil, in)
	if err != nil {
		t.Fatalf("Filter: %v", err)
	}
	got := unpack(t, out)
	want := []string{"big.example.\t60\tIN\tA\t1.1.1.1", "big.example.\t60\tIN\tA\t2.2.2.2"}
	if !got.Truncated || !slices.Equal(rrs(got.Answer), want) {
		t.Errorf("TC %v, answer %v; want TC and %v", got.Truncated, rrs(got.Answer), want)
	}
	if len(rm.Addrs) != 1 || rm.Addrs[0] != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("removed %v, want 10.0.0.1 (10.0.0.2 was cut off)", rm.Addrs)
	}

	// Cut with no internal address before the cut: unchanged.
	clean := full[:len(full)-6-16-16]
	clean = slices.Clone(clean[:len(clean)-16])
	if out, rm, err := p.Filter(nil, clean); err != nil || !bytes.Equal(out, clean) || len(rm.Addrs) != 0 {
		t.Errorf("clean truncated answer: %x, %+v, %v; want it unchanged", out, rm, err)
	}
}

// TestFilterMalformed: answers that cannot be parsed pass unchanged when
// nothing must be removed, and give ErrMalformed when something must.
func TestFilterMalformed(t *testing.T) {
	p := mustPolicy(t, Config{FilterInternal: true})
	head := "beef 8180 0001 0001 0000 0000 01 61 00 0001 0001"
	for name, c := range map[string]struct {
		in   []byte
		err  bool
		want []byte // if not nil, the filtered answer
	}{
		"empty":                    {in: nil},
		"header only":              {in: mustHex("beef 8185 0000 0000 0000 0000")},
		"question overruns":        {in: mustHex("beef 8180 0001 0001 0000 0000 05 61 00")},
		"A of 5 bytes, private":    {in: mustHex(head + "c00c 0001 0001 0000003c 0005 0a000001 00"), err: true},
		"A of 5 bytes, public":     {in: mustHex(head + "c00c 0001 0001 0000003c 0005 01020304 00")},
		"A of 3 bytes":             {in: mustHex(head + "c00c 0001 0001 0000003c 0003 0a0000")},
		"AAAA of 17 bytes private": {in: mustHex(head + "c00c 001c 0001 0000003c 0011 fe800000000000000000000000000001 00"), err: true},
		// Go's dnsmessage reads 10.0.0.1 from the next record's owner.
		"A of 0 bytes before internal-looking bytes": {
			in: mustHex("beef 8180 0001 0002 0000 0000 01 61 00 0001 0001 c00c 0001 0001 0000003c 0000" +
				"0a 00000001000000000000 00 0001 0001 0000003c 0004 01020304"),
			want: mustHex("beef 8180 0001 0001 0000 0000 01 61 00 0001 0001" +
				"0a 00000001000000000000 00 0001 0001 0000003c 0004 01020304")},
		"bad label in owner": {in: mustHex(head + "40 0001 0001 0000003c 0004 0a000001")},
		"pointer loop, private": {
			in:  mustHex("beef 8180 0001 0001 0000 0000 01 61 00 0001 0001 c013 0001 0001 0000003c 0004 0a000001"),
			err: true},
	} {
		out, rm, err := p.Filter([]byte("dst"), c.in)
		switch {
		case c.err && !errors.Is(err, ErrMalformed):
			t.Errorf("%s: error %v, want ErrMalformed", name, err)
		case c.err && string(out) != "dst":
			t.Errorf("%s: dst changed on error: %x", name, out)
		case c.want != nil && (err != nil || !bytes.Equal(out, append([]byte("dst"), c.want...)) || len(rm.Addrs) != 1):
			t.Errorf("%s: Filter = %x, %+v, %v; want %x", name, out[min(3, len(out)):], rm, err, c.want)
		case c.want != nil:
		case !c.err && c.want == nil && (err != nil || !bytes.Equal(out, append([]byte("dst"), c.in...)) || len(rm.Addrs) != 0):
			t.Errorf("%s: Filter = %x, %+v, %v; want the answer unchanged", name, out, rm, err)
		}
	}
}

func TestFilterZeroAllocs(t *testing.T) {
	p := mustPolicy(t, Config{FilterInternal: true, Forward: []string{"lab.test"}})
	for name, m := range map[string]*dns.Msg{
		"public": reply(t, "www.example.com.", dns.TypeA, []string{
			"www.example.com. 60 IN CNAME example.com.", "example.com. 60 IN A 93.184.216.34",
			"example.com. 60 IN AAAA 2606:2800:220:1:248:1893:25c8:1946"},
			[]string{"example.com. 60 IN NS a.iana-servers.net."}, nil),
		"exempt": reply(t, "rebind.lab.test.", dns.TypeA, []string{"rebind.lab.test. 60 IN A 10.1.2.3"}, nil, nil),
		"https":  reply(t, "svc.example.", dns.TypeHTTPS, []string{"svc.example. 60 IN HTTPS 1 . alpn=h2 ipv4hint=1.2.3.4 ipv6hint=2001:db8::1"}, nil, nil),
	} {
		in := pack(t, m)
		if n := testing.AllocsPerRun(100, func() { p.Filter(in[:0], in) }); n != 0 {
			t.Errorf("%s: Filter allocates %.1f times, want 0", name, n)
		}
	}
}

func TestRemovalString(t *testing.T) {
	rm := Removal{Name: "x.example.", Addrs: []netip.Addr{
		netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("::ffff:127.0.0.1")}, Signatures: 1}
	want := "10.1.2.3 (private network (RFC 1918)), ::ffff:127.0.0.1 (IPv4-mapped (RFC 4291 section 2.5.5.2) " +
		"form of loopback (RFC 1122 section 3.2.1.3)); 1 RRSIG"
	if got := rm.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
