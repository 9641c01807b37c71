package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// slack bounds how late, past a deadline or "at once", an answer may come
// and still count: scheduling delays on a loaded 2-core machine (the CI
// runs every package at once). These tests check that answers come before
// the client's own timeout (5 s), not how fast: speed is measured by the
// benchmarks and load scripts.
const slack = 2 * time.Second

// testLogger writes the proxy's log to the test log.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ tb testing.TB }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// running is a proxy serving on 127.0.0.1 for one test.
type running struct {
	p    *Proxy
	addr string // UDP and TCP
	stop func() error
}

// startProxy runs a proxy for srv with cfg's other fields, and waits until
// it answers. The proxy stops when the test ends.
func startProxy(tb testing.TB, srv *dnscrypttest.Server, cfg Config) *running {
	tb.Helper()
	if len(cfg.Resolvers) == 0 {
		cfg.Resolvers = []upstream.Spec{spec(srv)}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(tb)
	}
	ready := make(chan struct{})
	cfg.OnReady = func() { close(ready) }
	p, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	pc, ln := listenPair(tb)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, pc, ln) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		tb.Fatalf("Serve returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		tb.Fatal("proxy not ready after 10 s")
	}
	// The proxy may answer (SERVFAIL) before its certificate: wait for it.
	select {
	case <-p.up.Ready():
	case <-time.After(10 * time.Second):
		cancel()
		tb.Fatal("no certificate after 10 s")
	}
	var stopped bool
	var serveErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(10 * time.Second):
				tb.Fatal("Serve did not return within 10 s of cancel")
			}
		}
		return serveErr
	}
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return &running{p: p, addr: pc.LocalAddr().String(), stop: stop}
}

// listenPair binds UDP and TCP on the same free port of 127.0.0.1.
func listenPair(tb testing.TB) (net.PacketConn, net.Listener) {
	tb.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	tb.Fatal("no free port for UDP and TCP")
	return nil, nil
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

// ask sends m to the proxy over network ("udp" or "tcp").
func (r *running) ask(tb testing.TB, network string, m *dns.Msg) (*dns.Msg, error) {
	tb.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	resp, _, err := c.Exchange(m, r.addr)
	return resp, err
}

// testLoggerTo writes the proxy's log to the test log and to w.
func testLoggerTo(tb testing.TB, w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(tlogWriter{tb}, w), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// spec is the upstream.Spec of an in-process DNSCrypt resolver.
func spec(srv *dnscrypttest.Server) upstream.Spec {
	return upstream.Spec{Kind: upstream.KindDNSCrypt, Addr: srv.Addr, ProviderName: dnscrypttest.ProviderName,
		ProviderKey: srv.ProviderKey}
}

// dnscryptOf returns the DNSCrypt upstream of p.
func dnscryptOf(p *Proxy) *upstream.DNSCrypt { return p.up.(*upstream.DNSCrypt) }
