package proxy

import (
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

// BenchmarkUDPQuery measures one UDP query through the proxy to an
// in-process resolver, with 32 queries in flight. The resolver and the
// client run in the same process, so ns/op is an upper bound of the proxy's
// own cost; the dnsperf script in tests/bench measures the proxy alone.
func BenchmarkUDPQuery(b *testing.B) {
	for _, c := range []dnscrypt.Construction{dnscrypt.XSalsa20Poly1305, dnscrypt.XChaCha20Poly1305} {
		b.Run(c.String(), func(b *testing.B) {
			srv := dnscrypttest.NewServer(b, nil, dnscrypttest.CertSpec{Construction: c})
			rp := startProxy(b, srv, Config{Logger: slog.New(slog.DiscardHandler)})
			m := query("www.example", dns.TypeA)
			pkt, _ := m.Pack()
			const inflight = 32
			work := make(chan struct{}, inflight)
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for range inflight {
				wg.Go(func() {
					c, err := net.Dial("udp", rp.addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					buf := make([]byte, 1500)
					for range work {
						c.SetDeadline(time.Now().Add(5 * time.Second))
						c.Write(pkt)
						if _, err := c.Read(buf); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
		})
	}
}
