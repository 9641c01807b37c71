package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// TestEvictedRequestsGetServfail: with a silent resolver and a full set of
// active requests, the client that loses its slot gets SERVFAIL at once,
// over UDP and over TCP, instead of silence until its own timeout: the
// newest while the set holds fresh requests (shed), the oldest once they
// are stale (evicted).
func TestEvictedRequestsGetServfail(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil)
			rp := startProxy(t, srv, Config{MaxActiveRequests: 4, Timeout: 4 * time.Second}) // stale after 1 s
			srv.SetFaults(dnscrypttest.Faults{Silent: true})
			type result struct {
				id  uint16
				r   *dns.Msg
				err error
			}
			results := make(chan result, 20)
			ask := func(id uint16) {
				go func() {
					c := &dns.Client{Net: network, Timeout: 10 * time.Second}
					m := query("www.example", dns.TypeA)
					m.Id = id
					r, _, err := c.Exchange(m, rp.addr)
					results <- result{id, r, err}
				}()
			}
			expect := func(id uint16, why string) {
				t.Helper()
				sent := time.Now()
				res := <-results
				if res.id != id || res.err != nil || res.r.Rcode != dns.RcodeServerFailure || time.Since(sent) > slack {
					t.Fatalf("%s: got query %d: %v, %v %v after the new query; want query %d SERVFAIL at once",
						why, res.id, res.r, res.err, time.Since(sent), id)
				}
			}
			for id := range uint16(4) {
				ask(id + 1)
				waitFor(t, func() bool { return rp.p.active.len() == int(id+1) })
			}
			// The set is full of fresh requests: a new one is shed.
			ask(5)
			expect(5, "full set of fresh requests")
			if rp.p.sheds.Load() != 1 || rp.p.evictions.Load() != 0 {
				t.Fatalf("sheds %d, evictions %d; want 1 and 0", rp.p.sheds.Load(), rp.p.evictions.Load())
			}
			// Once the oldest is stale, a new one evicts it.
			waitFor(t, func() bool { return rp.p.active.oldestAge() >= rp.p.staleAge() })
			ask(6)
			expect(1, "the oldest, stale")
			if rp.p.evictions.Load() != 1 || rp.p.active.len() != 4 {
				t.Fatalf("evictions %d, active %d; want 1 and 4", rp.p.evictions.Load(), rp.p.active.len())
			}
		})
	}
}

// waitFor polls cond until it holds, for up to 10 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}

// TestRefusedUDPPortFailsFast: when the resolver's UDP port refuses (ICMP
// port unreachable on the connected socket), the requests waiting on that
// socket go to TCP at once instead of waiting out the UDP timeout.
func TestRefusedUDPPortFailsFast(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{Timeout: 40 * time.Second}) // UDP wait: 10 s
	if r, err := rp.ask(t, "udp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("before: %v %v", r, err)
	}
	srv.CloseUDP()
	for i := range 3 {
		start := time.Now()
		r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
		took := time.Since(start)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
		if took > 5*time.Second {
			t.Fatalf("query %d answered over TCP after %v: the refused UDP port was waited out (10 s)", i, took)
		}
	}
}

// TestUpstreamTCPBounded: however many requests wait on TCP upstream, at
// most a small fixed share of the request cap is open to the resolver at
// once; the others wait for a slot or get SERVFAIL at their deadline.
func TestUpstreamTCPBounded(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{MaxActiveRequests: 400, Timeout: 2 * time.Second})
	srv.SetFaults(dnscrypttest.Faults{Silent: true})
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			r, err := rp.ask(t, "tcp", query("www.example", dns.TypeA))
			if err != nil || r.Rcode != dns.RcodeServerFailure {
				t.Errorf("got %v, %v; want SERVFAIL", r, err)
			}
		})
	}
	wg.Wait()
	// The proxy's own count, checked against the resolver's: it saw at
	// least as many at once (it notices a closed connection a little
	// after the proxy opened the next one, so its count runs ahead under
	// load; no upper bound from it).
	want := maxUpstreamTCP(400)
	if peak := int(dnscryptOf(rp.p).TCPConns.Peak()); peak != want {
		t.Fatalf("the proxy had %d TCP connections to the resolver at once, want %d (the bound)", peak, want)
	}
	if _, peak := srv.TCPConns(); peak < want {
		t.Fatalf("the resolver saw %d TCP connections at once, fewer than the proxy counted (%d)", peak, want)
	}
}

// TestTCPClientsNotLockedOut: idle TCP clients filling the connection cap
// do not lock out a new client: the oldest idle connection is closed to
// admit it, and the log says once that the cap was hit.
func TestTCPClientsNotLockedOut(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	var logBuf logtest.Buffer
	rp := startProxy(t, srv, Config{MaxActiveRequests: 1,
		Logger: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range rp.p.conns.max {
		c, err := net.Dial("tcp", rp.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, func() bool { return rp.p.conns.n.Load() == int64(rp.p.conns.max) })
	for i := range 5 {
		start := time.Now()
		r, err := rp.ask(t, "tcp", query("www.example", dns.TypeA))
		if err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("new client %d with the cap full of idle connections: %v %v", i, r, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("new client %d waited %v", i, took)
		}
	}
	// The oldest idle connections were the ones closed.
	held[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held[0].Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("oldest idle connection: %v, want EOF", err)
	}
	if n := strings.Count(logBuf.String(), "TCP connection limit"); n != 1 {
		t.Fatalf("%d log lines about the connection limit, want 1:\n%s", n, logBuf.String())
	}
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestExpiredCertificateNotUsed: once the certificate in use has expired
// and the resolver offers no valid one, the proxy answers SERVFAIL at once
// and sends nothing with the expired key; when a valid certificate appears,
// answers resume.
func TestExpiredCertificateNotUsed(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	srv := dnscrypttest.NewServer(t, nil, dnscrypttest.CertSpec{Serial: 1,
		NotBefore: clock.Now().Add(-time.Hour), NotAfter: clock.Now().Add(time.Hour)})
	rp := startProxy(t, srv, Config{Now: clock.Now, Timeout: 5 * time.Second})
	if r, err := rp.ask(t, "udp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("before expiry: %v %v", r, err)
	}
	before := len(srv.Queries())
	clock.Add(2 * time.Hour)
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		r, err := rp.ask(t, network, query("www.example", dns.TypeA))
		if err != nil || r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("%s after expiry: %v %v; want SERVFAIL", network, r, err)
		}
		if took := time.Since(start); took > slack {
			t.Fatalf("%s: SERVFAIL after %v, want at once", network, took)
		}
	}
	if n := len(srv.Queries()); n != before {
		t.Fatalf("%d queries sent with the expired certificate", n-before)
	}
	// A new certificate, valid on the proxy's clock: answers resume.
	now := clock.Now()
	if err := srv.SetCerts(dnscrypttest.CertSpec{Serial: 2, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
		return err == nil && r.Rcode == dns.RcodeSuccess
	})
}

// TestServfailBeforeFirstCertificate: directly as through SOCKS, the proxy
// answers from the start: SERVFAIL while it has no certificate, each such
// query hurrying the next attempt, and real answers once one arrives.
func TestServfailBeforeFirstCertificate(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	srv.SetFaults(dnscrypttest.Faults{RefuseCert: true})
	ready := make(chan struct{})
	var logBuf logtest.Buffer
	p, err := New(Config{Resolvers: []upstream.Spec{spec(srv)},
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil)), OnReady: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	pc, ln := listenPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, pc, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve returned: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not ready within 5 s without a certificate")
	}
	rp := &running{p: p, addr: pc.LocalAddr().String()}
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		r, err := rp.ask(t, network, query("www.example", dns.TypeA))
		if err != nil || r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("%s without a certificate: %v %v; want SERVFAIL", network, r, err)
		}
		if took := time.Since(start); took > slack {
			t.Fatalf("%s: SERVFAIL after %v", network, took)
		}
	}
	// The resolver comes back: a client asking every 200 ms is answered
	// within 2 s, whatever backoff the failures had reached.
	// Without clients, the backoff grows: 1 s, 2 s, then 4 s after the
	// third failure.
	waitFor(t, func() bool { return strings.Count(logBuf.String(), "Unable to retrieve server certificates") >= 3 })
	srv.SetFaults(dnscrypttest.Faults{})
	start := time.Now()
	for {
		r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
		if err == nil && r.Rcode == dns.RcodeSuccess {
			break
		}
		if time.Since(start) > 2500*time.Millisecond {
			t.Fatalf("no answer %v after the resolver came back: %v %v", time.Since(start), r, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
