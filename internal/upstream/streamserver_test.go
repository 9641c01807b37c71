package upstream

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// streamServer is an in-process DNS server over TCP or TLS for the tests
// of the stream upstreams. It reads pipelined queries on each connection
// and hands each to handle, on the connection's reader goroutine; handle
// answers (at once, later, out of order, from any goroutine), or closes,
// resets or stalls the connection, or writes garbage. It checks that no
// two queries in flight on one connection share an ID.
type streamServer struct {
	t      testing.TB
	ln     net.Listener
	Addr   string
	tls    *tls.Config
	handle func(sc *serverConn, q *dns.Msg, raw []byte)
	// wrap, if set, wraps each TCP connection accepted (under TLS).
	wrap func(net.Conn) net.Conn
	// serveRaw, if set, serves each connection (after the TLS handshake)
	// instead of the query reader and handle.
	serveRaw func(net.Conn)

	Accepted atomic.Int32 // connections accepted
	Open     atomic.Int32 // connections open
	Queries  atomic.Int32 // queries read, on every connection

	mu    sync.Mutex
	conns []*serverConn
	wg    sync.WaitGroup
}

// serverConn is one connection of a streamServer.
type serverConn struct {
	srv   *streamServer
	raw   net.Conn      // the TCP connection
	c     net.Conn      // raw, or TLS over it: the serving goroutine's
	Index int           // 0 for the first connection accepted
	Done  chan struct{} // closed when the connection has ended
	// State is the handler's, guarded by mu.
	State any

	wmu sync.Mutex
	w   *bufio.Writer

	mu          sync.Mutex
	outstanding map[uint16]bool
	MaxOut      int // the most queries in flight at once
	N           int // queries read
	TLS         tls.ConnectionState
}

// streamAnswerA is the default handler: an A record 192.0.2.1 for the name.
func streamAnswerA(sc *serverConn, q *dns.Msg, _ []byte) { sc.Reply(aAnswer(q)) }

func aAnswer(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 192.0.2.1")
	m.Answer = append(m.Answer, rr)
	if o := q.IsEdns0(); o != nil {
		m.SetEdns0(1232, o.Do())
	}
	return m
}

// newStreamServer starts a server on 127.0.0.1:0, over TLS with the
// certificate cert if it is not nil; each of opts may change it first.
func newStreamServer(t testing.TB, cert *tls.Certificate, handle func(*serverConn, *dns.Msg, []byte),
	opts ...func(*streamServer)) *streamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &streamServer{t: t, ln: ln, Addr: ln.Addr().String(), handle: handle}
	if cert != nil {
		s.tls = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	}
	for _, o := range opts {
		o(s)
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and closes its connections.
func (s *streamServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for _, sc := range s.conns {
		sc.raw.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *streamServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		sc := &serverConn{srv: s, raw: c, c: c, Index: len(s.conns), Done: make(chan struct{}),
			outstanding: map[uint16]bool{}}
		s.conns = append(s.conns, sc)
		s.mu.Unlock()
		s.Accepted.Add(1)
		s.Open.Add(1)
		s.wg.Add(1)
		go sc.serve()
	}
}

// Conn returns the i-th connection accepted, waiting for it.
func (s *streamServer) Conn(i int) *serverConn {
	s.t.Helper()
	var sc *serverConn
	waitFor(s.t, "connection to be accepted", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if i < len(s.conns) {
			sc = s.conns[i]
		}
		return sc != nil
	})
	return sc
}

func (sc *serverConn) serve() {
	s := sc.srv
	defer s.wg.Done()
	defer close(sc.Done)
	defer s.Open.Add(-1)
	defer sc.raw.Close()
	if s.wrap != nil {
		sc.c = s.wrap(sc.c)
	}
	if s.tls != nil {
		tc := tls.Server(sc.c, s.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		sc.mu.Lock()
		sc.TLS = tc.ConnectionState()
		sc.mu.Unlock()
		sc.c = tc
	}
	if s.serveRaw != nil {
		s.serveRaw(sc.c)
		return
	}
	sc.w = bufio.NewWriter(sc.c)
	r := bufio.NewReader(sc.c)
	for {
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return
		}
		raw := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(r, raw); err != nil {
			return
		}
		q := new(dns.Msg)
		if err := q.Unpack(raw); err != nil {
			s.t.Errorf("server: a query that does not parse: %v", err)
			return
		}
		sc.mu.Lock()
		if sc.outstanding[q.Id] {
			s.t.Errorf("server: ID %d twice in flight on one connection", q.Id)
		}
		sc.outstanding[q.Id] = true
		sc.MaxOut = max(sc.MaxOut, len(sc.outstanding))
		sc.N++
		sc.mu.Unlock()
		s.Queries.Add(1)
		s.handle(sc, q, raw)
	}
}

// Reply sends m, and takes its ID out of those in flight.
func (sc *serverConn) Reply(m *dns.Msg) {
	b, err := m.Pack()
	if err != nil {
		sc.srv.t.Errorf("server: packing %v: %v", m, err)
		return
	}
	sc.mu.Lock()
	delete(sc.outstanding, m.Id)
	sc.mu.Unlock()
	sc.WriteRaw(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b)
}

// WriteRaw writes the byte strings as they are, at once.
func (sc *serverConn) WriteRaw(bs ...[]byte) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	for _, b := range bs {
		sc.w.Write(b)
	}
	sc.w.Flush()
}

// Forget takes id out of those in flight (the query will not be answered).
func (sc *serverConn) Forget(id uint16) {
	sc.mu.Lock()
	delete(sc.outstanding, id)
	sc.mu.Unlock()
}

// Close closes the connection (a FIN).
func (sc *serverConn) Close() { sc.raw.Close() }

// Reset closes the connection with a RST.
func (sc *serverConn) Reset() {
	sc.raw.(*net.TCPConn).SetLinger(0)
	sc.raw.Close()
}

// Stats returns how many queries the connection read and the most in
// flight at once.
func (sc *serverConn) Stats() (n, maxOut int) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.N, sc.MaxOut
}

// waitClosed waits for the connection to end.
func (sc *serverConn) waitClosed(t testing.TB, what string) {
	t.Helper()
	select {
	case <-sc.Done:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// selfSigned returns a self-signed P-256 certificate for name, and the
// SHA-256 of its TBS part (a DNS stamp's pin).
func selfSigned(t testing.TB, name string) (*tls.Certificate, [32]byte, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, sha256.Sum256(cert.RawTBSCertificate), cert
}

// testDialer dials directly, says it is proxied if proxied, records the
// credentials of each dial, and may hold dials until release is closed.
type testDialer struct {
	proxied bool
	hold    chan struct{} // nil: dial at once
	mu      sync.Mutex
	creds   []egress.Credentials
}

func (d *testDialer) DialTCP(ctx context.Context, addr string, cred egress.Credentials, payload []byte) (net.Conn, error) {
	d.mu.Lock()
	d.creds = append(d.creds, cred)
	d.mu.Unlock()
	if d.hold != nil {
		select {
		case <-d.hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return egress.Direct().DialTCP(ctx, addr, cred, payload)
}

func (d *testDialer) DialUDP(string) (*net.UDPConn, error) { return nil, egress.ErrNoUDP }
func (d *testDialer) Proxied() bool                        { return d.proxied }
func (d *testDialer) String() string                       { return "test dialer" }

func (d *testDialer) Creds() []egress.Credentials {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]egress.Credentials(nil), d.creds...)
}
