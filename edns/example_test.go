package edns_test

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

func ExamplePrepareQuery() {
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeA) // as glibc sends it: no OPT
	pkt, _ := m.Pack()

	buf := make([]byte, 0, 512)
	up, q, err := edns.PrepareQuery(buf, pkt, edns.DefaultPayloadSize)
	if err != nil {
		fmt.Println(err)
		return
	}
	sent := new(dns.Msg)
	_ = sent.Unpack(up)
	fmt.Printf("client %d bytes, upstream %d bytes with OPT size %d\n", len(pkt), len(up), sent.IsEdns0().UDPSize())
	fmt.Printf("client limit %d, client sent OPT: %v\n", q.Limit, q.HadOPT)
	// Output:
	// client 29 bytes, upstream 40 bytes with OPT size 1252
	// client limit 512, client sent OPT: false
}

func ExamplePrepareAnswer() {
	m := new(dns.Msg)
	m.SetQuestion("big.example.com.", dns.TypeA)
	pkt, _ := m.Pack()
	_, q, _ := edns.PrepareQuery(nil, pkt, edns.DefaultPayloadSize)

	// The upstream answer: 100 A records and an OPT, about 1.6 KB.
	a := new(dns.Msg)
	a.SetReply(m)
	a.Compress = true
	for i := range 100 {
		a.Answer = append(a.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: "big.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A:   net.IPv4(192, 0, 2, byte(i)),
		})
	}
	a.SetEdns0(1232, false)
	ans, _ := a.Pack()

	out, err := edns.PrepareAnswer(nil, ans, q)
	if err != nil {
		fmt.Println(err) // the proxy drops the answer
		return
	}
	r := new(dns.Msg)
	_ = r.Unpack(out)
	fmt.Printf("%d bytes -> %d bytes, TC %v, %d records, OPT %v\n",
		len(ans), len(out), r.Truncated, len(r.Answer), r.IsEdns0() != nil)
	// Output:
	// 1644 bytes -> 497 bytes, TC true, 29 records, OPT false
}

func ExampleTCReplyBytes() {
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeMX)
	m.SetEdns0(1232, true) // as dig sends it
	pkt, _ := m.Pack()

	reply, err := edns.TCReplyBytes(nil, pkt)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("query flags %x, reply flags %x, same length: %v\n", pkt[2:4], reply[2:4], len(reply) == len(pkt))
	// Output:
	// query flags 0100, reply flags 8380, same length: true
}

func ExampleSetPayloadSize() {
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeDS)
	m.SetEdns0(4096, true)
	fmt.Println("client limit:", edns.ClientLimit(m))
	edns.SetPayloadSize(m, edns.DefaultPayloadSize)
	opt := m.IsEdns0()
	fmt.Println("upstream size:", opt.UDPSize(), "DO:", opt.Do())
	// Output:
	// client limit: 4096
	// upstream size: 1252 DO: true
}

func ExampleTruncate() {
	m := new(dns.Msg)
	m.SetQuestion("txt.example.com.", dns.TypeTXT)
	a := new(dns.Msg)
	a.SetReply(m)
	for range 10 {
		a.Answer = append(a.Answer, &dns.TXT{
			Hdr: dns.RR_Header{Name: "txt.example.com.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{fmt.Sprintf("%0200d", 0)},
		})
	}
	edns.Truncate(a, edns.ClientLimit(m))
	out, _ := a.Pack()
	fmt.Printf("%d bytes, TC %v, %d records\n", len(out), a.Truncated, len(a.Answer))
	// Output:
	// 459 bytes, TC true, 2 records
}

func ExampleErrorReply() {
	cookies := edns.NewCookies([16]byte{}) // use a random secret
	client := netip.MustParseAddr("127.0.0.1")
	for _, m := range []*dns.Msg{
		func() *dns.Msg { // two questions
			m := new(dns.Msg)
			m.SetQuestion("example.com.", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(),
		func() *dns.Msg { // dig +edns=1 +noednsneg
			m := new(dns.Msg)
			m.SetQuestion("example.com.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}(),
		func() *dns.Msg { // dig +header-only +cookie
			m := new(dns.Msg)
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
			return m
		}(),
	} {
		pkt, _ := m.Pack()
		_, _, err := edns.PrepareQuery(nil, pkt, edns.DefaultPayloadSize)
		out, ok := edns.ErrorReply(nil, pkt, cookies, client, time.Unix(1700000000, 0))
		r := new(dns.Msg)
		_ = r.Unpack(out)
		fmt.Printf("%v\n  answer %v: RCODE %d, %d question, OPT %v\n", err, ok, r.Rcode, len(r.Question), r.IsEdns0() != nil)
		if opt := r.IsEdns0(); opt != nil && len(opt.Option) > 0 {
			fmt.Printf("  %s\n", opt.Option[0])
		}
	}
	// Output:
	// edns: malformed message: question count not 1
	//   answer true: RCODE 1, 0 question, OPT false
	// edns: unsupported EDNS version
	//   answer true: RCODE 16, 1 question, OPT true
	// edns: cookie-only query
	//   answer true: RCODE 0, 0 question, OPT true
	//   0102030405060708010000006553f1000cc7aa0bc5ada678
}

func ExampleCookies_Stamp() {
	cookies := edns.NewCookies([16]byte{}) // use a random secret
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	pkt, _ := m.Pack()

	up, q, _ := edns.PrepareQuery(nil, pkt, edns.DefaultPayloadSize)
	sent := new(dns.Msg)
	_ = sent.Unpack(up)
	fmt.Println("options upstream:", len(sent.IsEdns0().Option))

	cookies.Stamp(&q, netip.MustParseAddr("127.0.0.1"), time.Unix(1700000000, 0))
	a := new(dns.Msg)
	a.SetReply(sent) // the resolver's answer, with an OPT record
	ans, _ := a.Pack()
	out, _ := edns.PrepareAnswer(nil, ans, q)
	r := new(dns.Msg)
	_ = r.Unpack(out)
	fmt.Println("the client gets:", r.IsEdns0().Option[0])
	// Output:
	// options upstream: 0
	// the client gets: 0102030405060708010000006553f1000cc7aa0bc5ada678
}
