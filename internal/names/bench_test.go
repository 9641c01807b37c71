package names

import (
	"testing"

	"github.com/miekg/dns"
)

// The common paths, which run on every query and every answer, must not
// allocate: a forwarded query, a local answer, an answer with nothing to
// remove. The slow path of Filter (something removed) is measured for scale.

func BenchmarkLocal(b *testing.B) {
	p := mustPolicy(b, Config{Forward: []string{"corp.internal", "lab.test"}})
	for _, c := range []struct {
		name string
		q    q
	}{
		{"forwarded", q{name: "www.example.com.", qtype: dns.TypeA, edns: true, size: 1232}},
		{"forwarded-arpa", q{name: "34.216.184.93.in-addr.arpa.", qtype: dns.TypePTR}},
		{"forwarded-suffix", q{name: "db.corp.internal.", qtype: dns.TypeA}},
		{"onion", q{name: "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion.", qtype: dns.TypeA, edns: true, size: 1232}},
		{"localhost", q{name: "localhost.", qtype: dns.TypeAAAA}},
		{"reverse-ip6", q{name: ptrName(b, "fe80::1"), qtype: dns.TypePTR}},
	} {
		pkt := c.q.pack(b)
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				p.Local(buf[:0], pkt, 1252)
			}
		})
	}
}

func BenchmarkFilter(b *testing.B) {
	p := mustPolicy(b, Config{FilterInternal: true, Forward: []string{"lab.test"}})
	for _, c := range []struct {
		name string
		m    *dns.Msg
	}{
		{"clean", reply(b, "www.example.com.", dns.TypeA, []string{
			"www.example.com. 60 IN CNAME example.com.", "example.com. 60 IN A 93.184.216.34",
			"example.com. 60 IN A 93.184.216.35"}, []string{"example.com. 60 IN NS a.iana-servers.net."}, nil)},
		{"clean-dnssec", reply(b, "www.example.com.", dns.TypeA, []string{
			"www.example.com. 60 IN A 93.184.216.34", rrsig("www.example.com.", "A")}, nil, nil)},
		{"exempt", reply(b, "rebind.lab.test.", dns.TypeA, []string{"rebind.lab.test. 60 IN A 10.1.2.3"}, nil, nil)},
		{"removed", reply(b, "rebind.example.", dns.TypeA, []string{
			"rebind.example. 60 IN A 10.1.2.3", "rebind.example. 60 IN A 20.84.0.11"}, nil, nil)},
	} {
		in := pack(b, c.m)
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, _, err := p.Filter(buf[:0], in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
