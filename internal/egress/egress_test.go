package egress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/socks5test"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestDirect(t *testing.T) {
	addr := socks5test.Echo(t)
	d := Direct()
	c, err := d.DialTCP(ctx(t), addr, Credentials{User: "ignored"}, []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	for _, name := range []string{"localhost:53", "resolver.example:443", "x.onion:853"} {
		if _, err := d.DialTCP(ctx(t), name, Credentials{}, nil); !errors.Is(err, ErrHostName) {
			t.Errorf("DialTCP(%s): %v, want ErrHostName (no local lookup)", name, err)
		}
		if _, err := d.DialUDP(name); !errors.Is(err, ErrHostName) {
			t.Errorf("DialUDP(%s): %v, want ErrHostName", name, err)
		}
	}
	u, err := d.DialUDP("127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	u.Close()
	if d.Proxied() {
		t.Fatal("Direct is proxied")
	}
}

func TestSOCKS5(t *testing.T) {
	addr := socks5test.Echo(t)
	for _, tc := range []struct {
		name    string
		server  socks5test.Config
		cfg     SOCKSConfig
		cred    Credentials
		methods []byte
		warn    string
	}{
		{"Tor", socks5test.Config{AnyCredentials: true}, SOCKSConfig{Isolation: true}, Credentials{"epoch1", "x"}, []byte{0, 2}, ""},
		{"no authentication", socks5test.Config{}, SOCKSConfig{Isolation: true}, Credentials{"epoch1", "x"}, []byte{0, 2},
			"it takes no authentication"},
		{"account", socks5test.Config{User: "lab", Password: "pw"}, SOCKSConfig{Isolation: true, Account: true},
			Credentials{"lab", "pw"}, []byte{0, 2}, "an account on it"},
		{"no credentials", socks5test.Config{}, SOCKSConfig{}, Credentials{}, []byte{0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := socks5test.NewServer(t, tc.server)
			var logs bytes.Buffer
			tc.cfg.Addr, tc.cfg.Logger = srv.Addr, slog.New(slog.NewTextHandler(&logs, nil))
			d := SOCKS5(tc.cfg)
			for range 2 {
				c, err := d.DialTCP(ctx(t), addr, tc.cred, []byte("ping"))
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 4)
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
					t.Fatalf("echo: %q %v", buf, err)
				}
				c.Close()
			}
			for _, r := range srv.Requests() {
				if !bytes.Equal(r.Methods, tc.methods) || r.Target != addr {
					t.Fatalf("session %+v, want methods %x to %s", r, tc.methods, addr)
				}
			}
			if n := strings.Count(logs.String(), "no isolation by credentials"); (tc.warn == "") != (n == 0) || n > 1 ||
				!strings.Contains(logs.String(), tc.warn) {
				t.Fatalf("warnings:\n%s\nwant one saying %q", logs.String(), tc.warn)
			}
			if _, err := d.DialUDP(addr); !errors.Is(err, ErrNoUDP) {
				t.Fatalf("DialUDP through SOCKS: %v, want ErrNoUDP", err)
			}
		})
	}
}

// TestSOCKS5Names: a host name goes to the proxy as a name, never looked
// up here.
func TestSOCKS5Names(t *testing.T) {
	addr := socks5test.Echo(t)
	_, port, _ := net.SplitHostPort(addr)
	srv := socks5test.NewServer(t, socks5test.Config{Hosts: map[string]string{"resolver.onion": "127.0.0.1"}})
	d := SOCKS5(SOCKSConfig{Addr: srv.Addr})
	c, err := d.DialTCP(ctx(t), "resolver.onion:"+port, Credentials{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if r := srv.Requests(); len(r) != 1 || r[0].Target != "resolver.onion:"+port {
		t.Fatalf("requests %+v", r)
	}
	if _, err := d.DialTCP(ctx(t), "nosuch.onion:"+port, Credentials{}, nil); err == nil ||
		!errors.Is(err, ErrSOCKS) || !strings.Contains(err.Error(), "host unreachable") {
		t.Fatalf("unknown name: %v", err)
	}
}
