package socks5test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// dial connects to target through the server with x/net/proxy's SOCKS5
// client; auth nil means no authentication.
func dial(t *testing.T, s *Server, auth *proxy.Auth, target string) (net.Conn, error) {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", s.Addr, auth, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return d.(proxy.ContextDialer).DialContext(ctx, "tcp", target)
}

// roundTrip checks that data flows both ways on c.
func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("ping through socks5test")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// lastRequest waits for the server to record n sessions and returns the
// last one.
func lastRequest(t *testing.T, s *Server, n int) Request {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rs := s.Requests()
		if len(rs) >= n {
			if len(rs) > n {
				t.Fatalf("got %d sessions recorded, want %d: %+v", len(rs), n, rs)
			}
			return rs[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d sessions recorded, want %d: %+v", len(rs), n, rs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServer(t *testing.T) {
	target := Echo(t)
	_, port, _ := net.SplitHostPort(target)
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	for _, tc := range []struct {
		name   string
		cfg    Config
		auth   *proxy.Auth
		target string
		want   Request // Err compared with errors.Is
	}{
		{"no authentication", Config{}, nil, target, Request{Target: target}},
		{"username and password", Config{User: "u", Password: "p"}, &proxy.Auth{User: "u", Password: "p"}, target,
			Request{User: "u", Password: "p", Target: target}},
		{"any credentials", Config{AnyCredentials: true}, &proxy.Auth{User: "iso-1", Password: "x"}, target,
			Request{User: "iso-1", Password: "x", Target: target}},
		{"any credentials, none offered", Config{AnyCredentials: true}, nil, target, Request{Target: target}},
		{"name in Hosts", Config{Hosts: map[string]string{"resolver.test": "127.0.0.1"}}, nil,
			"resolver.test:" + port, Request{Target: "resolver.test:" + port}},
		{"wrong password", Config{User: "u", Password: "p"}, &proxy.Auth{User: "u", Password: "wrong"}, target,
			Request{User: "u", Password: "wrong", Err: ErrAuth}},
		{"authentication required, none offered", Config{User: "u", Password: "p"}, nil, target, Request{Err: ErrNoMethod}},
		{"refused", Config{Refuse: 5}, nil, target, Request{Target: target, Err: ErrRefused}},
		{"name not in Hosts", Config{}, nil, "nowhere.test:" + port, Request{Target: "nowhere.test:" + port, Err: ErrUnreachable}},
		{"target refuses", Config{}, nil, closed, Request{Target: closed, Err: ErrUnreachable}},
		{"silent", Config{Silent: true}, nil, target, Request{Err: ErrSilent}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(t, tc.cfg)
			c, err := dial(t, s, tc.auth, tc.target)
			if tc.want.Err == nil {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				roundTrip(t, c)
			} else if err == nil {
				c.Close()
				t.Fatalf("dial succeeded, want a failure (%v)", tc.want.Err)
			}
			got := lastRequest(t, s, 1)
			if got.User != tc.want.User || got.Password != tc.want.Password || got.Target != tc.want.Target ||
				len(got.Early) != 0 || !errors.Is(got.Err, tc.want.Err) || (got.Err == nil) != (tc.want.Err == nil) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestServerProtocolError: a client that is not SOCKS5 is recorded with
// ErrProtocol.
func TestServerProtocolError(t *testing.T) {
	s := NewServer(t, Config{})
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 16)); err == nil {
		t.Errorf("the server answered %d bytes to HTTP", n)
	}
	if got := lastRequest(t, s, 1); !errors.Is(got.Err, ErrProtocol) {
		t.Errorf("got %+v, want ErrProtocol", got)
	}
}

// TestServerEarlyData: with HoldReply, what the client sends right after
// its CONNECT request is recorded as Early and reaches the target.
func TestServerEarlyData(t *testing.T) {
	target := Echo(t)
	host, port, _ := net.SplitHostPort(target)
	p, _ := strconv.Atoi(port)
	s := NewServer(t, Config{HoldReply: 100 * time.Millisecond})
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	early := []byte("query before the reply")
	req := append([]byte{5, 1, 0, 5, 1, 0, 1}, net.ParseIP(host).To4()...)
	req = append(append(req, byte(p>>8), byte(p)), early...)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	reply := make([]byte, 2+10+len(early)) // method choice, CONNECT reply, echo
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reply[:4], []byte{5, 0, 5, 0}) || !bytes.Equal(reply[12:], early) {
		t.Errorf("got %x, want method 0, reply 0, then the echo of %q", reply, early)
	}
	if got := lastRequest(t, s, 1); got.Err != nil || !bytes.Equal(got.Early, early) || got.Target != target {
		t.Errorf("got %+v, want Target %s and Early %q", got, target, early)
	}
}

// TestServerMethodChoice: offered both "no authentication" and
// username/password, the server picks as microsocks does without a user
// (none), with one (username/password), and as Tor does (username/password
// with AnyCredentials); the offer is recorded.
func TestServerMethodChoice(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want byte
	}{
		{"no user", Config{}, 0},
		{"user required", Config{User: "u", Password: "p"}, 2},
		{"any credentials", Config{AnyCredentials: true}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(t, tc.cfg)
			c, err := net.Dial("tcp", s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte{5, 2, 0, 2}); err != nil {
				t.Fatal(err)
			}
			var got [2]byte
			if _, err := io.ReadFull(c, got[:]); err != nil {
				t.Fatal(err)
			}
			if got != [2]byte{5, tc.want} {
				t.Fatalf("method choice %x, want 05%02x", got, tc.want)
			}
			c.Close()
			if r := lastRequest(t, s, 1); !bytes.Equal(r.Methods, []byte{0, 2}) {
				t.Errorf("recorded methods %x, want 0002", r.Methods)
			}
		})
	}
}

// TestUnixServer: a server on a Unix-domain socket relays as the TCP one.
func TestUnixServer(t *testing.T) {
	target := Echo(t)
	s := NewUnixServer(t, Config{})
	if !filepath.IsAbs(s.Addr) {
		t.Fatalf("Addr %q is not a socket path", s.Addr)
	}
	d, err := proxy.SOCKS5("unix", s.Addr, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c)
	if got := lastRequest(t, s, 1); got.Err != nil || got.Target != target {
		t.Errorf("got %+v, want Target %s", got, target)
	}
}

// FuzzSession feeds arbitrary client bytes to a session (with every CONNECT
// refused, so nothing is dialled): it must end, record the session once,
// and never panic.
func FuzzSession(f *testing.F) {
	f.Add([]byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 53}, false)             // CONNECT 127.0.0.1:53, no auth
	f.Add([]byte{5, 1, 2, 1, 1, 'u', 1, 'p', 5, 1, 0, 3, 1, 'x', 0, 53}, true) // user/password, CONNECT x:53
	f.Add([]byte{5, 1, 0, 5, 2, 0, 1}, false)                                  // BIND
	f.Add([]byte{5, 1, 0, 5, 1, 0, 9}, false)                                  // bad address type
	f.Add([]byte{4, 1, 0, 53, 127, 0, 0, 1, 0}, false)                         // SOCKS4
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, in []byte, anyCreds bool) {
		s := &Server{c: Config{Refuse: 5, AnyCredentials: anyCreds}, cs: map[net.Conn]bool{}}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer server.Close()
			s.session(server)
		}()
		go func() {
			client.Write(in)
			client.Close()
		}()
		go io.Copy(io.Discard, client)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("session of %x did not end", in)
		}
		if n := len(s.Requests()); n != 1 {
			t.Fatalf("session of %x: %d requests recorded, want 1", in, n)
		}
	})
}
