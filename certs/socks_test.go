package certs

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/proxy"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/socks5test"
)

func socksDialer(tb testing.TB, addr string, auth *proxy.Auth) proxy.ContextDialer {
	tb.Helper()
	d, err := proxy.SOCKS5("tcp", addr, auth, proxy.Direct)
	if err != nil {
		tb.Fatal(err)
	}
	return d.(proxy.ContextDialer)
}

func TestDialExchangerSOCKS5(t *testing.T) {
	cert := nastyCert(t, 12, nil)
	other := mustCreate(t, testTemplate(3, dnscrypt.XSalsa20Poly1305))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, certHandler(t, false, other, cert), nil, ln)
	dnsAddr := ln.Addr().String()
	_, dnsPort, _ := net.SplitHostPort(dnsAddr)
	hosts := map[string]string{"resolver.onion.test": "127.0.0.1"}

	tests := []struct {
		name       string
		user, pass string      // server side
		auth       *proxy.Auth // client side
		addr       string      // resolver address given to Fetch
		wantErr    bool
	}{
		{"no auth", "", "", nil, dnsAddr, false},
		{"user and password", "lab", "labpass", &proxy.Auth{User: "lab", Password: "labpass"}, dnsAddr, false},
		{"host name goes to the proxy unresolved", "", "", nil, "resolver.onion.test:" + dnsPort, false},
		{"wrong password", "lab", "labpass", &proxy.Auth{User: "lab", Password: "nope"}, dnsAddr, true},
		{"no credentials for a proxy that wants them", "lab", "labpass", nil, dnsAddr, true},
		{"unknown host name", "", "", nil, "unknown.test:" + dnsPort, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := socks5test.NewServer(t, socks5test.Config{User: tc.user, Password: tc.pass, Hosts: hosts})
			ex := &DialExchanger{Dialer: socksDialer(t, srv.Addr, tc.auth), Timeout: 5 * time.Second}
			cs, err := Fetch(context.Background(), ex, tc.addr, testProvider, testPK, testNow, false)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", cs)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != 2 || !bytes.Equal(cs[0].Raw, cert) || cs[1].Serial != 3 {
				t.Errorf("got %v", cs)
			}
			if got := srv.Requests(); len(got) != 1 || got[0].Target != tc.addr {
				t.Errorf("proxy saw %+v, want one CONNECT to %q", got, tc.addr)
			}
		})
	}
}

func TestDialExchangerSOCKS5Deadline(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion(testProvider+".", dns.TypeTXT)
	for _, tc := range []struct {
		name string
		srv  socks5test.Config
		addr func() string
	}{
		{"proxy never answers the handshake", socks5test.Config{Silent: true}, func() string { return "192.0.2.1:443" }},
		{"resolver never answers", socks5test.Config{}, func() string { return silentServer(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := socks5test.NewServer(t, tc.srv)
			ex := &DialExchanger{Dialer: socksDialer(t, srv.Addr, nil)}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, _, err := ex.ExchangeContext(ctx, q, tc.addr())
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("returned after %v, want about 200ms", d)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want DeadlineExceeded", err)
			}
		})
	}
}
