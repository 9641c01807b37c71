package names_test

import (
	"fmt"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/names"
)

func ExamplePolicy_Local() {
	p, err := names.New(names.Config{Forward: []string{"corp.internal"}})
	if err != nil {
		panic(err)
	}
	for _, name := range []string{"abcdef.onion.", "db.corp.internal.", "nas.home.arpa.", "www.example.com."} {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		pkt, _ := q.Pack()
		out, why, ok := p.Local(nil, pkt, 1252)
		if !ok {
			fmt.Printf("%s: upstream\n", name)
			continue
		}
		m := new(dns.Msg)
		_ = m.Unpack(out)
		fmt.Printf("%s: %s, %s\n", name, dns.RcodeToString[m.Rcode], why)
	}
	// Output:
	// abcdef.onion.: NXDOMAIN, Tor onion service (RFC 7686 section 2)
	// db.corp.internal.: upstream
	// nas.home.arpa.: NXDOMAIN, residential home network name (RFC 8375)
	// www.example.com.: upstream
}

func ExamplePolicy_Filter() {
	p, err := names.New(names.Config{FilterInternal: true})
	if err != nil {
		panic(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("rebind.example.", dns.TypeA)
	m.Response = true
	for _, s := range []string{"rebind.example. 60 IN A 192.168.1.1", "rebind.example. 60 IN A 20.84.0.11"} {
		rr, _ := dns.NewRR(s)
		m.Answer = append(m.Answer, rr)
	}
	ans, _ := m.Pack()
	out, rm, err := p.Filter(ans[:0], ans)
	if err != nil {
		panic(err)
	}
	fmt.Printf("removed from %s: %s\n", rm.Name, rm)
	_ = m.Unpack(out)
	fmt.Println(len(m.Answer), "record left:", m.Answer[0].(*dns.A).A)
	// Output:
	// removed from rebind.example.: 192.168.1.1 (private network (RFC 1918))
	// 1 record left: 20.84.0.11
}
