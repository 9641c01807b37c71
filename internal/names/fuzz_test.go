package names

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

// fuzzForward are the suffixes the fuzzed policies forward.
var fuzzForward = []string{"corp.internal", "lab.test"}

// underAny reports whether the presentation-form name is equal to or under
// one of the suffixes, comparing whole labels without regard to ASCII case.
// It is the tests' own reading of the rule, on miekg/dns's names.
func underAny(name string, suffixes []string) bool {
	labels := dns.SplitDomainName(asciiLower(name))
	for _, s := range suffixes {
		sl := dns.SplitDomainName(asciiLower(s))
		if len(sl) <= len(labels) && strings.Join(labels[len(labels)-len(sl):], ".") == strings.Join(sl, ".") {
			return true
		}
	}
	return false
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// localApexes lists the apexes of the local zones.
func localApexes() []string {
	var out []string
	for _, z := range localZones.list {
		out = append(out, z.apex)
	}
	return out
}

func FuzzLocal(f *testing.F) {
	for _, c := range []q{
		{name: "abcdef.onion.", qtype: dns.TypeA, rd: true},
		{name: "localhost.", qtype: dns.TypeANY, edns: true, size: 1232, do: true},
		{name: "Foo.LocalHost.", qtype: dns.TypeAAAA, cd: true},
		{name: "1.0.0.127.in-addr.arpa.", qtype: dns.TypePTR, edns: true, size: 4096, cookie: true},
		{name: "4.3.2.10.in-addr.arpa.", qtype: dns.TypePTR},
		{name: "onion.", qtype: dns.TypeSOA},
		{name: "x.onion.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS},
		{name: "x.onion.", qtype: dns.TypeA, edns: true, size: 1232, ver: 1},
		{name: "db.corp.internal.", qtype: dns.TypeA},
		{name: "www.example.com.", qtype: dns.TypeA},
	} {
		f.Add(c.pack(f), uint16(1252))
	}
	f.Add(mustHex("beef 0100 0001 0000 0000 0000 c00c 0001 0001"), uint16(0))
	f.Add(mustHex("beef 0100 0001 0000 0000 0001 05 6f6e696f6e 00 0001 0001 00 0029 04d0 00000000 0004"), uint16(512))
	p := mustPolicy(f, Config{Forward: fuzzForward})
	apexes := localApexes()
	f.Fuzz(func(t *testing.T, pkt []byte, size uint16) {
		out, why, ok := p.Local([]byte("dst"), pkt, size)
		if !ok {
			if string(out) != "dst" || why != "" {
				t.Fatalf("not answered, yet dst %q and why %q", out, why)
			}
			// A query the proxy accepts, for a local name that is not
			// forwarded, must be answered.
			if _, _, err := edns.PrepareQuery(nil, pkt, 1252); err == nil {
				name := unpack(t, pkt).Question[0].Name
				if underAny(name, apexes) && !underAny(name, fuzzForward) {
					t.Fatalf("%s (%x) went upstream", name, pkt)
				}
			}
			return
		}
		if !bytes.HasPrefix(out, []byte("dst")) || why == "" {
			t.Fatalf("answered, but dst %q lost or no reason (%q)", out, why)
		}
		ans := out[3:]
		if len(ans) > 512 {
			t.Fatalf("answer of %d bytes", len(ans))
		}
		m := unpack(t, ans)
		if len(m.Question) != 1 {
			t.Fatalf("answer %v without its question", m)
		}
		buf := make([]byte, 256)
		n, err := dns.PackDomainName(m.Question[0].Name, buf, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		qEnd := 12 + n + 4
		if be16(ans) != be16(pkt) || !m.Response || !bytes.Equal(ans[12:qEnd], pkt[12:qEnd]) {
			t.Fatalf("answer %x does not match query %x", ans, pkt)
		}
		if name := m.Question[0].Name; !underAny(name, apexes) || underAny(name, fuzzForward) {
			t.Fatalf("%s answered locally", name)
		}
		switch m.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeRefused, dns.RcodeBadVers:
		default:
			t.Fatalf("rcode %s", dns.RcodeToString[m.Rcode])
		}
		if in := new(dns.Msg); in.Unpack(pkt) == nil && (in.IsEdns0() != nil) != (m.IsEdns0() != nil) {
			t.Fatalf("OPT in query %v, in answer %v", in.IsEdns0() != nil, m.IsEdns0() != nil)
		}
	})
}

func FuzzFilter(f *testing.F) {
	for _, m := range []*dns.Msg{
		reply(f, "rebind.lab.test.", dns.TypeA, []string{"rebind.lab.test. 60 IN A 10.1.2.3", "rebind.lab.test. 60 IN A 20.84.0.11"}, nil, nil),
		reply(f, "rebind6.example.", dns.TypeAAAA, []string{"rebind6.example. 60 IN AAAA fe80::1", "rebind6.example. 60 IN AAAA ::ffff:10.0.0.1"}, nil, nil),
		reply(f, "www.evil.example.", dns.TypeA, []string{"www.evil.example. 60 IN CNAME a.evil.example.", "a.evil.example. 60 IN A 192.168.1.1",
			rrsig("a.evil.example.", "A")}, []string{"evil.example. 60 IN NS ns.evil.example."}, []string{"ns.evil.example. 60 IN A 127.0.0.1"}),
		reply(f, "svc.example.", dns.TypeHTTPS, []string{"svc.example. 60 IN HTTPS 1 . alpn=h2 ipv4hint=1.2.3.4,10.9.8.7 ipv6hint=fd00::1"}, nil, nil),
		reply(f, "www.example.com.", dns.TypeA, []string{"www.example.com. 60 IN A 93.184.216.34"}, nil, nil),
		reply(f, "localhost.", dns.TypeA, []string{"localhost. 60 IN A 127.0.0.1"}, nil, nil),
	} {
		b := pack(f, m)
		f.Add(b)
		f.Add(b[:len(b)-3]) // truncated inside the last record
		m.SetEdns0(1232, true)
		f.Add(pack(f, m))
	}
	f.Add(mustHex("beef 8180 0001 0002 0000 0000 01 61 00 0001 0001 c00c 0001 0001 0000003c 0000" +
		"0a 00000001000000000000 00 0001 0001 0000003c 0004 01020304"))
	f.Add(mustHex("beef 8180 0001 0001 0000 0000 01 61 00 0001 0001 c00c 0001 0001 0000003c 0005 0a000001 00"))
	p := mustPolicy(f, Config{FilterInternal: true, Forward: fuzzForward})
	exempt := append(localApexes(), fuzzForward...)
	f.Fuzz(func(t *testing.T, answer []byte) {
		out, rm, err := p.Filter([]byte("dst"), answer)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || string(out) != "dst" || rm.Name != "" || rm.Addrs != nil {
				t.Fatalf("error %v with output %q and removal %+v", err, out, rm)
			}
			return
		}
		if !bytes.HasPrefix(out, []byte("dst")) {
			t.Fatalf("dst lost: %q", out)
		}
		out = out[3:]
		if len(rm.Addrs) == 0 && (!bytes.Equal(out, answer) || rm.Signatures != 0) {
			t.Fatalf("nothing removed, yet %x became %x", answer, out)
		}
		if new(dns.Msg).Unpack(answer) == nil {
			unpack(t, out) // parses, as the input did
		}
		if name, ok := questionName(answer); ok && underAny(name, exempt) {
			return
		}
		if a, ok := readableInternal(out); ok {
			t.Fatalf("internal address %s left in %x (from %x)", a, out, answer)
		}
	})
}

// questionName returns the first question name of msg as Go's dnsmessage
// reads it (dots inside labels are not escaped: a superset of the names
// that are exempt).
func questionName(msg []byte) (string, bool) {
	var p dnsmessage.Parser
	if _, err := p.Start(msg); err != nil {
		return "", false
	}
	q, err := p.Question()
	if err != nil {
		return "", false
	}
	return q.Name.String(), true
}

// readableInternal returns an internal address that miekg/dns or Go's
// dnsmessage can read from msg, if any.
func readableInternal(msg []byte) (netip.Addr, bool) {
	if a, ok := dnsmessageInternal(msg); ok {
		return a, true
	}
	m := new(dns.Msg)
	if m.Unpack(msg) != nil {
		return netip.Addr{}, false
	}
	for _, s := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, r := range s {
			var ips [][]byte
			switch r := r.(type) {
			case *dns.A:
				ips = append(ips, r.A.To4())
			case *dns.AAAA:
				ips = append(ips, r.AAAA.To16())
			case *dns.SVCB:
				ips = svcbHints(r.Value)
			case *dns.HTTPS:
				ips = svcbHints(r.Value)
			}
			for _, ip := range ips {
				if a, ok := netip.AddrFromSlice(ip); ok && isInternal(a) {
					return a, true
				}
			}
		}
	}
	return netip.Addr{}, false
}

func svcbHints(kv []dns.SVCBKeyValue) [][]byte {
	var out [][]byte
	for _, v := range kv {
		switch v := v.(type) {
		case *dns.SVCBIPv4Hint:
			for _, ip := range v.Hint {
				out = append(out, ip.To4())
			}
		case *dns.SVCBIPv6Hint:
			for _, ip := range v.Hint {
				out = append(out, ip.To16())
			}
		}
	}
	return out
}

// dnsmessageInternal reads msg as Go's resolver does, record by record until
// the first error, and returns an internal address it finds.
func dnsmessageInternal(msg []byte) (netip.Addr, bool) {
	var p dnsmessage.Parser
	if _, err := p.Start(msg); err != nil {
		return netip.Addr{}, false
	}
	if err := p.SkipAllQuestions(); err != nil {
		return netip.Addr{}, false
	}
	sections := []struct {
		header func() (dnsmessage.ResourceHeader, error)
		skip   func() error
	}{{p.AnswerHeader, p.SkipAnswer}, {p.AuthorityHeader, p.SkipAuthority}, {p.AdditionalHeader, p.SkipAdditional}}
	for _, sec := range sections {
		for {
			h, err := sec.header()
			if err != nil {
				if errors.Is(err, dnsmessage.ErrSectionDone) {
					break
				}
				return netip.Addr{}, false
			}
			var addrs []netip.Addr
			switch h.Type {
			case dnsmessage.TypeA:
				r, err := p.AResource()
				if err != nil {
					return netip.Addr{}, false
				}
				addrs = append(addrs, netip.AddrFrom4(r.A))
			case dnsmessage.TypeAAAA:
				r, err := p.AAAAResource()
				if err != nil {
					return netip.Addr{}, false
				}
				addrs = append(addrs, netip.AddrFrom16(r.AAAA))
			case dnsmessage.TypeSVCB, dnsmessage.TypeHTTPS:
				var r dnsmessage.SVCBResource
				if h.Type == dnsmessage.TypeSVCB {
					r, err = p.SVCBResource()
				} else {
					var https dnsmessage.HTTPSResource
					https, err = p.HTTPSResource()
					r = https.SVCBResource
				}
				if err != nil {
					return netip.Addr{}, false
				}
				if v, ok := r.GetParam(dnsmessage.SVCParamIPv4Hint); ok {
					for ; len(v) >= 4; v = v[4:] {
						addrs = append(addrs, netip.AddrFrom4([4]byte(v)))
					}
				}
				if v, ok := r.GetParam(dnsmessage.SVCParamIPv6Hint); ok {
					for ; len(v) >= 16; v = v[16:] {
						addrs = append(addrs, netip.AddrFrom16([16]byte(v)))
					}
				}
			default:
				if err := sec.skip(); err != nil {
					return netip.Addr{}, false
				}
			}
			for _, a := range addrs {
				if isInternal(a) {
					return a, true
				}
			}
		}
	}
	return netip.Addr{}, false
}
