package certs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"golang.org/x/net/proxy"
)

// socksServer is a minimal SOCKS5 server (RFC 1928, RFC 1929): CONNECT
// only, optional username/password, and a table of host names it knows,
// so tests can check that names arrive unresolved.
type socksServer struct {
	ln         net.Listener
	user, pass string            // both empty: no authentication
	hosts      map[string]string // host name -> IP
	silent     bool              // accept, then never answer

	mu      sync.Mutex
	targets []string // CONNECT targets as requested, "host:port"
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startSOCKS(tb testing.TB, s *socksServer) *socksServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.ln = ln
	tb.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.track(c)
			s.wg.Go(func() { s.handle(c) })
		}
	})
	return s
}

func (s *socksServer) track(c net.Conn) {
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
}

func (s *socksServer) Targets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.targets...)
}

func (s *socksServer) handle(c net.Conn) {
	defer c.Close()
	if s.silent {
		io.Copy(io.Discard, c)
		return
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	method := byte(0x00)
	if s.user != "" {
		method = 0x02
	}
	if !bytes.Contains(methods, []byte{method}) {
		c.Write([]byte{5, 0xff})
		return
	}
	c.Write([]byte{5, method})
	if method == 0x02 {
		user, pass, ok := readUserPass(c)
		if !ok || user != s.user || pass != s.pass {
			c.Write([]byte{1, 1})
			return
		}
		c.Write([]byte{1, 0})
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	if req[0] != 5 || req[1] != 1 { // CONNECT only
		c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	var host string
	switch req[3] {
	case 1, 4:
		ip := make([]byte, map[byte]int{1: 4, 4: 16}[req[3]])
		if _, err := io.ReadFull(c, ip); err != nil {
			return
		}
		host = net.IP(ip).String()
	case 3:
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(c, name); err != nil {
			return
		}
		host = string(name)
	default:
		c.Write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return
	}
	portStr := strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))
	s.mu.Lock()
	s.targets = append(s.targets, net.JoinHostPort(host, portStr))
	s.mu.Unlock()
	if ip, ok := s.hosts[host]; ok {
		host = ip
	} else if net.ParseIP(host) == nil {
		c.Write([]byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0}) // host unreachable: we never resolve
		return
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort(host, portStr), time.Second)
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	s.track(up)
	defer up.Close()
	c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
	c.SetDeadline(time.Time{})
	s.wg.Go(func() {
		io.Copy(up, c)
		up.(*net.TCPConn).CloseWrite()
	})
	io.Copy(c, up)
}

func readUserPass(c net.Conn) (user, pass string, ok bool) {
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 1 {
		return "", "", false
	}
	u := make([]byte, b[1])
	if _, err := io.ReadFull(c, u); err != nil {
		return "", "", false
	}
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		return "", "", false
	}
	p := make([]byte, b[0])
	if _, err := io.ReadFull(c, p); err != nil {
		return "", "", false
	}
	return string(u), string(p), true
}

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
			srv := startSOCKS(t, &socksServer{user: tc.user, pass: tc.pass, hosts: hosts})
			ex := &DialExchanger{Dialer: socksDialer(t, srv.ln.Addr().String(), tc.auth), Timeout: 5 * time.Second}
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
			if got := srv.Targets(); len(got) != 1 || got[0] != tc.addr {
				t.Errorf("proxy saw targets %q, want [%q]", got, tc.addr)
			}
		})
	}
}

func TestDialExchangerSOCKS5Deadline(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion(testProvider+".", dns.TypeTXT)
	for _, tc := range []struct {
		name string
		srv  *socksServer
		addr func() string
	}{
		{"proxy never answers the handshake", &socksServer{silent: true}, func() string { return "192.0.2.1:443" }},
		{"resolver never answers", &socksServer{}, func() string { return silentServer(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startSOCKS(t, tc.srv)
			ex := &DialExchanger{Dialer: socksDialer(t, srv.ln.Addr().String(), nil)}
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
