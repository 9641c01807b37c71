package edns

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// newQuery returns a query for name and qtype with RD set.
func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	return m
}

// withOPT adds an OPT record to m with size, DO bit and options.
func withOPT(m *dns.Msg, size uint16, do bool, opts ...dns.EDNS0) *dns.Msg {
	m.SetEdns0(size, do)
	m.IsEdns0().Option = opts
	return m
}

func pack(tb testing.TB, m *dns.Msg) []byte {
	tb.Helper()
	b, err := m.Pack()
	if err != nil {
		tb.Fatalf("packing: %v", err)
	}
	return b
}

func unpack(tb testing.TB, b []byte) *dns.Msg {
	tb.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		tb.Fatalf("unpacking %x: %v", b, err)
	}
	return m
}

// canonical repacks b uncompressed with the OPT record last, so that
// messages that differ only in compression or OPT position compare equal. ok is false if miekg/dns cannot do it.
func canonical(b []byte) ([]byte, bool) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, false
	}
	// Record order within the additional section is not significant for
	// the OPT record; Msg.Truncate moves it last.
	if opt := m.IsEdns0(); opt != nil {
		m.Extra = append(slices.DeleteFunc(m.Extra, func(rr dns.RR) bool { return rr == dns.RR(opt) }), opt)
	}
	m.Compress = false
	out, err := m.Pack()
	if err != nil {
		return nil, false
	}
	return out, true
}

// countOPT counts OPT records in every section of m.
func countOPT(m *dns.Msg) int {
	n := 0
	for _, s := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range s {
			if rr.Header().Rrtype == dns.TypeOPT {
				n++
			}
		}
	}
	return n
}

// hasECS reports whether m carries an EDNS Client Subnet option.
func hasECS(m *dns.Msg) bool { return hasOption(m, dns.EDNS0SUBNET) }

// hasCookie reports whether m carries a COOKIE option.
func hasCookie(m *dns.Msg) bool { return hasOption(m, dns.EDNS0COOKIE) }

// hasPrivate reports whether m carries an option that must not go
// upstream: Client Subnet or COOKIE.
func hasPrivate(m *dns.Msg) bool { return hasECS(m) || hasCookie(m) }

// hasOption reports whether an OPT record of m carries an option with code.
func hasOption(m *dns.Msg, code uint16) bool {
	for _, s := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range s {
			if opt, ok := rr.(*dns.OPT); ok {
				for _, o := range opt.Option {
					if o.Option() == code {
						return true
					}
				}
			}
		}
	}
	return false
}

// dropPrivate removes the EDNS Client Subnet and COOKIE options of m, as
// every query going upstream must have them removed.
func dropPrivate(m *dns.Msg) {
	for _, rr := range m.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			var keep []dns.EDNS0
			for _, o := range opt.Option {
				if o.Option() != dns.EDNS0SUBNET && o.Option() != dns.EDNS0COOKIE {
					keep = append(keep, o)
				}
			}
			opt.Option = keep
		}
	}
}

// answerFor builds a NOERROR answer to query q with n A records, an OPT
// record if opt, and compression on.
func answerFor(q *dns.Msg, n int, opt bool) *dns.Msg {
	a := new(dns.Msg)
	a.SetReply(q)
	a.RecursionAvailable = true
	a.Compress = true
	name := q.Question[0].Name
	for i := range n {
		a.Answer = append(a.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)),
		})
	}
	if opt {
		a.SetEdns0(1232, true)
	}
	return a
}

// txtAnswer builds an answer to q with n TXT records of size bytes each.
func txtAnswer(q *dns.Msg, n, size int, opt bool) *dns.Msg {
	a := new(dns.Msg)
	a.SetReply(q)
	a.Compress = true
	for i := range n {
		s := fmt.Sprintf("%03d-", i) + string(bytes.Repeat([]byte{'x'}, size-4))
		a.Answer = append(a.Answer, &dns.TXT{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{s},
		})
	}
	if opt {
		a.SetEdns0(4096, false)
	}
	return a
}

func mustPrepare(tb testing.TB, pkt []byte, size uint16) Query {
	tb.Helper()
	_, q, err := PrepareQuery(nil, pkt, size)
	if err != nil {
		tb.Fatalf("PrepareQuery(%x): %v", pkt, err)
	}
	return q
}
