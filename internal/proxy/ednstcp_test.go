package proxy

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/socks5test"
)

// udpBackend answers as a resolver does that forwards every query to its
// backend over UDP with the query's OPT (the ameshkov/dnscrypt server):
// an answer larger than the query's EDNS size (512 without one) comes back
// empty with TC set, over TCP too.
type udpBackend struct{}

func (udpBackend) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	rec := &capture{ResponseWriter: w}
	dnscrypttest.Zone{}.ServeDNS(rec, q)
	limit := dns.MinMsgSize
	if opt := q.IsEdns0(); opt != nil {
		limit = max(int(opt.UDPSize()), limit)
	}
	if rec.m.Len() > limit {
		rec.m.Answer, rec.m.Ns = nil, nil
		rec.m.Truncated = true
	}
	w.WriteMsg(rec.m)
}

type capture struct {
	dns.ResponseWriter
	m *dns.Msg
}

func (c *capture) WriteMsg(m *dns.Msg) error { c.m = m; return nil }

// TestEDNSOverTCPUpstream: over a TCP upstream the query advertises what
// the client can take, so that large answers arrive whole: 65535 for a TCP
// client, the client's own size for a UDP client (through SOCKS, and on
// the TCP retry after a truncated UDP answer). An answer that still comes
// back truncated over TCP reaches the client with TC, and the log says so.
func TestEDNSOverTCPUpstream(t *testing.T) {
	t.Run("direct", func(t *testing.T) {
		srv := dnscrypttest.NewServer(t, udpBackend{})
		rp := startProxy(t, srv, Config{})
		// A TCP client without EDNS: 13 KB whole.
		r, err := rp.ask(t, "tcp", query("size-13000.example", dns.TypeTXT))
		if err != nil || r.Truncated || r.Len() < 13000 {
			t.Fatalf("TCP client: %v %v", r, err)
		}
		if got := lastUpstreamOPT(t, srv); got != 65535 {
			t.Fatalf("TCP client: upstream OPT size %d, want 65535", got)
		}
		// A UDP client with EDNS 4096: the UDP answer is truncated (the
		// padding starts at 512), the TCP retry advertises 4096.
		m := query("size-3000.example", dns.TypeTXT)
		m.SetEdns0(4096, false)
		if r, err = rp.ask(t, "udp", m); err != nil || r.Truncated || len(r.Answer) != 3 {
			t.Fatalf("UDP client, EDNS 4096: %v %v", r, err)
		}
		if got := lastUpstreamOPT(t, srv); got != 4096 {
			t.Fatalf("UDP client's TCP retry: upstream OPT size %d, want 4096", got)
		}
	})
	t.Run("SOCKS", func(t *testing.T) {
		srv := dnscrypttest.NewServer(t, udpBackend{})
		socks := socks5test.NewServer(t, socks5test.Config{})
		var buf logtest.Buffer
		rp := startProxy(t, srv, Config{SOCKS: &SOCKS{Addr: socks.Addr, Isolation: IsolationNone},
			Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		r, err := rp.ask(t, "tcp", query("size-13000.example", dns.TypeTXT))
		if err != nil || r.Truncated || r.Len() < 13000 {
			t.Fatalf("TCP client: %v %v", r, err)
		}
		m := query("size-3000.example", dns.TypeTXT)
		m.SetEdns0(4096, false)
		if r, err = rp.ask(t, "udp", m); err != nil || r.Truncated || len(r.Answer) != 3 {
			t.Fatalf("UDP client, EDNS 4096: %v %v", r, err)
		}
		if got := lastUpstreamOPT(t, srv); got != 4096 {
			t.Fatalf("UDP client through SOCKS: upstream OPT size %d, want 4096", got)
		}
		// A UDP client without EDNS: the configured 1252 upstream; the
		// 3 KB answer comes back truncated over TCP, and the client gets
		// TC within 512 bytes; the log says why.
		if r, err = rp.ask(t, "udp", query("size-3000.example", dns.TypeTXT)); err != nil || !r.Truncated || r.Len() > 512 {
			t.Fatalf("UDP client without EDNS: %v %v", r, err)
		}
		if got := lastUpstreamOPT(t, srv); got != 1252 {
			t.Fatalf("UDP client without EDNS: upstream OPT size %d, want 1252", got)
		}
		if !strings.Contains(buf.String(), "truncated an answer over TCP") || !strings.Contains(buf.String(), "EDNS size 1252") {
			t.Fatalf("no log line about the truncated TCP answer:\n%s", buf.String())
		}
	})
}

func lastUpstreamOPT(t *testing.T, srv *dnscrypttest.Server) uint16 {
	t.Helper()
	qs := srv.Queries()
	opt := qs[len(qs)-1].Msg.IsEdns0()
	if opt == nil {
		return 0
	}
	return opt.UDPSize()
}
