// Package socks5test runs an in-process SOCKS5 server for tests (RFC 1928
// CONNECT, RFC 1929 username/password), as net/http/httptest runs HTTP
// servers. It records every session, failed ones included, so tests can
// check credentials, targets (names arrive unresolved), whether the client
// sent data before the CONNECT reply (optimistic data) and why a session
// failed, and it can misbehave: refuse with a reply code, or accept and
// never answer.
package socks5test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Why a session failed, in [Request.Err].
var (
	// ErrProtocol: the client broke the protocol, or the connection ended
	// before its CONNECT request.
	ErrProtocol = errors.New("socks5test: protocol error")
	// ErrNoMethod: the client offered no authentication method the server
	// accepts.
	ErrNoMethod = errors.New("socks5test: no acceptable authentication method")
	// ErrAuth: wrong username or password.
	ErrAuth = errors.New("socks5test: username/password rejected")
	// ErrRefused: Config.Refuse answered the CONNECT (the error names the
	// reply code).
	ErrRefused = errors.New("socks5test: CONNECT refused")
	// ErrUnreachable: a name not in Config.Hosts, or the target did not
	// accept the connection.
	ErrUnreachable = errors.New("socks5test: target unreachable")
	// ErrSilent: Config.Silent, the server never answered.
	ErrSilent = errors.New("socks5test: silent server")
)

// Request is what the server saw of one SOCKS session.
type Request struct {
	Methods        []byte // the authentication methods the greeting offered
	User, Password string // empty without authentication (or before it)
	Target         string // "host:port" as requested; empty before the CONNECT request
	// Early is what the client sent after the CONNECT request and before
	// the server's reply (optimistic data), within Config.HoldReply.
	Early []byte
	// Err says why the session failed (it wraps one of the errors above);
	// nil if the server connected to the target and relayed.
	Err error
}

// Config sets how the server behaves. The zero value accepts every
// client without authentication and connects anywhere on loopback.
type Config struct {
	// User and Password, if set, are required (method 0x02). With
	// AnyCredentials, any username/password is accepted, as Tor does, and
	// method 0x02 is chosen over 0x00 when both are offered. Otherwise,
	// as microsocks without a user, 0x00 is chosen.
	User, Password string
	AnyCredentials bool
	// Hosts maps names to IP addresses for CONNECT by name; a name not in
	// it gets reply 0x04 (host unreachable).
	Hosts map[string]string
	// Refuse answers every CONNECT with this reply code when non-zero.
	Refuse byte
	// Silent accepts connections and never answers (a hung proxy).
	Silent bool
	// HoldReply delays the CONNECT reply, collecting what the client sends
	// meanwhile into Request.Early.
	HoldReply time.Duration
}

// Server is a SOCKS5 server on 127.0.0.1.
type Server struct {
	Addr string // "127.0.0.1:port", or a socket path (NewUnixServer)

	ln net.Listener
	mu sync.Mutex
	c  Config
	rs []Request
	cs map[net.Conn]bool
	wg sync.WaitGroup
}

// Echo starts a TCP server on 127.0.0.1 that echoes what it reads on each
// connection, as a target to reach through the SOCKS server, until the
// test ends. It returns its address.
func Echo(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// NewServer starts a server that stops when the test ends.
func NewServer(tb testing.TB, c Config) *Server {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return start(tb, ln, c)
}

// NewUnixServer starts a server on a Unix-domain socket in a temporary
// directory (Tor's "SocksPort unix:PATH"); its Addr is the socket's path.
func NewUnixServer(tb testing.TB, c Config) *Server {
	tb.Helper()
	dir, err := os.MkdirTemp("", "socks5test")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "socks"))
	if err != nil {
		tb.Fatal(err)
	}
	return start(tb, ln, c)
}

func start(tb testing.TB, ln net.Listener, c Config) *Server {
	s := &Server{Addr: ln.Addr().String(), ln: ln, c: c, cs: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.serve()
	tb.Cleanup(s.Close)
	return s
}

// Set changes the behaviour for new sessions.
func (s *Server) Set(c Config) {
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
}

// Requests returns a copy of the sessions so far, oldest first: a session
// is recorded when the server answers its CONNECT request, or when it
// fails before that.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.rs...)
}

// Close stops the server, closes every session and waits for them.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.cs {
		c.Close()
	}
	s.cs = nil // sessions still starting close their own connections
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) track(c net.Conn, on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		if s.cs == nil {
			return false
		}
		s.cs[c] = true
	} else {
		delete(s.cs, c)
	}
	return true
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c, true) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			defer c.Close()
			s.session(c)
		}()
	}
}

func (s *Server) record(req Request) {
	s.mu.Lock()
	s.rs = append(s.rs, req)
	s.mu.Unlock()
}

func (s *Server) session(c net.Conn) {
	s.mu.Lock()
	cfg := s.c
	s.mu.Unlock()
	if cfg.Silent {
		s.record(Request{Err: ErrSilent})
		io.Copy(io.Discard, c)
		return
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req Request
	if err := s.negotiate(c, &cfg, &req); err != nil {
		req.Err = err
		s.record(req)
		return
	}
	target, err := readConnect(c)
	if err != nil {
		req.Err = err
		s.record(req)
		return
	}
	req.Target = target
	if cfg.HoldReply > 0 {
		c.SetReadDeadline(time.Now().Add(cfg.HoldReply))
		buf := make([]byte, 65536)
		n, _ := io.ReadAtLeast(c, buf, len(buf))
		req.Early = buf[:n]
		c.SetReadDeadline(time.Time{})
	}
	if cfg.Refuse != 0 {
		req.Err = fmt.Errorf("%w with reply code %d", ErrRefused, cfg.Refuse)
		s.record(req)
		c.Write([]byte{5, cfg.Refuse, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	host, port, _ := net.SplitHostPort(target)
	if ip := net.ParseIP(host); ip == nil {
		mapped, ok := cfg.Hosts[host]
		if !ok {
			req.Err = fmt.Errorf("%w: no address for %q in Config.Hosts", ErrUnreachable, host)
			s.record(req)
			c.Write([]byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0})
			return
		}
		host = mapped
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 5*time.Second)
	if err != nil {
		req.Err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		s.record(req)
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer up.Close()
	s.record(req)
	if !s.track(up, true) {
		return
	}
	defer s.track(up, false)
	c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
	c.SetDeadline(time.Time{})
	up.Write(req.Early)
	done := make(chan struct{})
	go func() {
		io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		close(done)
	}()
	io.Copy(c, up)
	c.Close()
	<-done
}

func (s *Server) negotiate(c net.Conn, cfg *Config, req *Request) error {
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return fmt.Errorf("%w: greeting: %w", ErrProtocol, err)
	}
	if h[0] != 5 {
		return fmt.Errorf("%w: version %d", ErrProtocol, h[0])
	}
	methods := make([]byte, h[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return fmt.Errorf("%w: methods: %w", ErrProtocol, err)
	}
	req.Methods = methods
	want := byte(0)
	if cfg.User != "" || cfg.Password != "" || cfg.AnyCredentials {
		want = 2
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered && cfg.AnyCredentials {
		for _, m := range methods {
			if m == 0 {
				offered, want = true, 0
			}
		}
	}
	if !offered {
		c.Write([]byte{5, 0xff})
		return fmt.Errorf("%w: offered %x, want %x", ErrNoMethod, methods, want)
	}
	c.Write([]byte{5, want})
	if want == 0 {
		return nil
	}
	var v [2]byte
	if _, err := io.ReadFull(c, v[:]); err != nil {
		return fmt.Errorf("%w: username/password request: %w", ErrProtocol, err)
	}
	if v[0] != 1 {
		return fmt.Errorf("%w: username/password version %d", ErrProtocol, v[0])
	}
	user := make([]byte, v[1])
	if _, err := io.ReadFull(c, user); err != nil {
		return fmt.Errorf("%w: username: %w", ErrProtocol, err)
	}
	if _, err := io.ReadFull(c, v[:1]); err != nil {
		return fmt.Errorf("%w: password length: %w", ErrProtocol, err)
	}
	pass := make([]byte, v[0])
	if _, err := io.ReadFull(c, pass); err != nil {
		return fmt.Errorf("%w: password: %w", ErrProtocol, err)
	}
	req.User, req.Password = string(user), string(pass)
	if !cfg.AnyCredentials && (string(user) != cfg.User || string(pass) != cfg.Password) {
		c.Write([]byte{1, 1})
		return ErrAuth
	}
	_, err := c.Write([]byte{1, 0})
	return err
}

// readConnect reads the CONNECT request and returns its target.
func readConnect(c net.Conn) (string, error) {
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return "", fmt.Errorf("%w: CONNECT request: %w", ErrProtocol, err)
	}
	if h[0] != 5 {
		return "", fmt.Errorf("%w: request version %d", ErrProtocol, h[0])
	}
	if h[1] != 1 {
		c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0})
		return "", fmt.Errorf("%w: command %d, only CONNECT (1) is supported", ErrProtocol, h[1])
	}
	var host string
	switch h[3] {
	case 1, 4:
		ip := make([]byte, 4)
		if h[3] == 4 {
			ip = make([]byte, 16)
		}
		if _, err := io.ReadFull(c, ip); err != nil {
			return "", fmt.Errorf("%w: address: %w", ErrProtocol, err)
		}
		host = net.IP(ip).String()
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return "", fmt.Errorf("%w: name length: %w", ErrProtocol, err)
		}
		name := make([]byte, l[0])
		if _, err := io.ReadFull(c, name); err != nil {
			return "", fmt.Errorf("%w: name: %w", ErrProtocol, err)
		}
		host = string(name)
	default:
		c.Write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0})
		return "", fmt.Errorf("%w: address type %d", ErrProtocol, h[3])
	}
	var p [2]byte
	if _, err := io.ReadFull(c, p[:]); err != nil {
		return "", fmt.Errorf("%w: port: %w", ErrProtocol, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(p[:])))), nil
}
