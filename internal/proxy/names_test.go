package proxy

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/socks5test"
)

// TestSpecialUseNames: special-use names are answered locally over UDP and
// TCP and never reach the resolver, but for the private domains, which
// go upstream.
func TestSpecialUseNames(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{PrivateDomains: []string{"corp.internal", "10.in-addr.arpa"}})
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  string // the answer's record data, if any
	}{
		{"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion", dns.TypeA, dns.RcodeNameError, ""},
		{"www.example.exit", dns.TypeA, dns.RcodeNameError, ""},
		{"printer.local", dns.TypeAAAA, dns.RcodeNameError, ""},
		{"router.home.arpa", dns.TypeA, dns.RcodeNameError, ""},
		{"x.invalid", dns.TypeMX, dns.RcodeNameError, ""},
		{"x.alt", dns.TypeTXT, dns.RcodeNameError, ""},
		{"db.other.internal", dns.TypeA, dns.RcodeNameError, ""},
		{"localhost", dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"app.localhost", dns.TypeAAAA, dns.RcodeSuccess, "::1"},
		{"1.1.168.192.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, ""},
		{"1.0.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, "localhost."},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", dns.TypePTR, dns.RcodeNameError, ""},
	} {
		for _, network := range []string{"udp", "tcp"} {
			r, err := rp.ask(t, network, query(tc.name, tc.qtype))
			if err != nil || r.Rcode != tc.rcode || !r.Authoritative {
				t.Fatalf("%s %s over %s: %v %v; want %s, authoritative", tc.name, dns.TypeToString[tc.qtype], network, r, err,
					dns.RcodeToString[tc.rcode])
			}
			if tc.want != "" && (len(r.Answer) != 1 || !strings.HasSuffix(r.Answer[0].String(), "\t"+tc.want)) {
				t.Fatalf("%s over %s: answer %v, want %s", tc.name, network, r.Answer, tc.want)
			}
			if tc.rcode == dns.RcodeNameError && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Fatalf("%s over %s: NXDOMAIN without an SOA for caches: %v", tc.name, network, r)
			}
		}
	}
	if n := len(srv.Queries()); n != 0 {
		t.Fatalf("%d special-use names went upstream: %v", n, srv.Queries()[0].Msg.Question)
	}
	// Private domains go upstream.
	for _, name := range []string{"db.corp.internal", "1.2.3.10.in-addr.arpa"} {
		if r, err := rp.ask(t, "udp", query(name, dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			t.Fatalf("private domain %s: %v %v", name, r, err)
		}
	}
	if n := len(srv.Queries()); n != 2 {
		t.Fatalf("%d upstream queries for the two private domains", n)
	}
}

// mixedAddrs answers every A query with an internal and a public address.
type mixedAddrs struct{}

func (mixedAddrs) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	r := new(dns.Msg)
	r.SetReply(q)
	hdr := dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}
	r.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4(10, 1, 2, 3)}, &dns.A{Hdr: hdr, A: net.IPv4(20, 84, 0, 11)},
		&dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)}}
	w.WriteMsg(r)
}

// TestRebindingFilter: internal addresses are removed from answers through
// SOCKS by default, directly only when asked to, and never for private
// domains; the log says which name.
func TestRebindingFilter(t *testing.T) {
	addrs := func(r *dns.Msg) []string {
		var s []string
		for _, rr := range r.Answer {
			s = append(s, rr.(*dns.A).A.String())
		}
		return s
	}
	all := []string{"10.1.2.3", "20.84.0.11", "127.0.0.1"}
	for _, tc := range []struct {
		name   string
		socks  bool
		filter Toggle
		qname  string
		want   []string
	}{
		{"direct, default", false, Auto, "rebind.example", all},
		{"direct, on", false, On, "rebind.example", []string{"20.84.0.11"}},
		{"SOCKS, default", true, Auto, "rebind.example", []string{"20.84.0.11"}},
		{"SOCKS, off", true, Off, "rebind.example", all},
		{"SOCKS, private domain", true, Auto, "host.lab.example", all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, mixedAddrs{})
			cfg := Config{FilterInternal: tc.filter, PrivateDomains: []string{"lab.example"}}
			var buf logtest.Buffer
			if tc.socks {
				socks := socks5test.NewServer(t, socks5test.Config{})
				cfg.SOCKS = &SOCKS{Addr: socks.Addr, Isolation: IsolationNone}
			}
			cfg.Logger = testLoggerTo(t, &buf)
			rp := startProxy(t, srv, cfg)
			for _, network := range []string{"udp", "tcp"} {
				r, err := rp.ask(t, network, query(tc.qname, dns.TypeA))
				if err != nil || r.Rcode != dns.RcodeSuccess || !slices.Equal(addrs(r), tc.want) {
					t.Fatalf("%s: %v %v; want %v", network, r, err, tc.want)
				}
			}
			if logged := strings.Contains(buf.String(), "Removed internal addresses"); logged != (len(tc.want) == 1) {
				t.Fatalf("log line about the removal: %v\n%s", logged, buf.String())
			}
		})
	}
}
