package proxy

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

func TestServeBasic(t *testing.T) {
	for _, c := range []dnscrypt.Construction{dnscrypt.XSalsa20Poly1305, dnscrypt.XChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil, dnscrypttest.CertSpec{Construction: c})
			rp := startProxy(t, srv, Config{})
			for _, network := range []string{"udp", "tcp"} {
				r, err := rp.ask(t, network, query("www.example", dns.TypeA))
				if err != nil {
					t.Fatalf("%s: %v", network, err)
				}
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("%s: %v", network, r)
				}
				if r.IsEdns0() != nil {
					t.Fatalf("%s: answer carries an OPT the client did not send", network)
				}
			}
			qs := srv.Queries()
			if len(qs) != 2 || qs[0].Transport != "udp" || qs[1].Transport != "tcp" {
				t.Fatalf("upstream saw %+v", qs)
			}
			if opt := qs[0].Msg.IsEdns0(); opt == nil || opt.UDPSize() != 1252 {
				t.Fatalf("upstream query OPT: %v", qs[0].Msg)
			}
		})
	}
}
