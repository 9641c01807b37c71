package dnscrypttest

import (
	"net"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Zone is the default handler: a small synthetic authority for any name.
//
//   - names whose first label starts with "nx": NXDOMAIN;
//   - A: 192.0.2.1; AAAA: 2001:db8::1;
//   - TXT for "size-N.<anything>": text records of about N bytes in all;
//     other TXT: one record "hello";
//   - any other type: NODATA.
//
// It echoes the query's EDNS0 OPT (size and DO bit), as a resolver does.
type Zone struct{}

func (Zone) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	r := new(dns.Msg)
	r.SetReply(q)
	r.Authoritative = true
	if opt := q.IsEdns0(); opt != nil {
		r.SetEdns0(opt.UDPSize(), opt.Do())
	}
	if len(q.Question) != 1 {
		r.Rcode = dns.RcodeFormatError
		w.WriteMsg(r)
		return
	}
	qq := q.Question[0]
	first, _, _ := strings.Cut(qq.Name, ".")
	hdr := dns.RR_Header{Name: qq.Name, Rrtype: qq.Qtype, Class: dns.ClassINET, Ttl: 60}
	switch {
	case strings.HasPrefix(strings.ToLower(first), "nx"):
		r.Rcode = dns.RcodeNameError
	case qq.Qtype == dns.TypeA:
		r.Answer = append(r.Answer, &dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 1)})
	case qq.Qtype == dns.TypeAAAA:
		r.Answer = append(r.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::1")})
	case qq.Qtype == dns.TypeTXT:
		size := 5
		if n, ok := strings.CutPrefix(strings.ToLower(first), "size-"); ok {
			if v, err := strconv.Atoi(n); err == nil && v > 0 && v <= 60000 {
				size = v
			}
		}
		r.Answer = append(r.Answer, txtOfSize(hdr, size)...)
	}
	w.WriteMsg(r)
}

// txtOfSize returns TXT records carrying about size bytes of text, in
// records of at most 1000 bytes (strings of 250).
func txtOfSize(hdr dns.RR_Header, size int) []dns.RR {
	if size == 5 {
		return []dns.RR{&dns.TXT{Hdr: hdr, Txt: []string{"hello"}}}
	}
	var rrs []dns.RR
	for i := 0; size > 0; i++ {
		t := &dns.TXT{Hdr: hdr}
		for j := 0; j < 4 && size > 0; j++ {
			n := min(size, 250)
			t.Txt = append(t.Txt, strings.Repeat(string(rune('a'+(i+j)%26)), n))
			size -= n
		}
		rrs = append(rrs, t)
	}
	return rrs
}
