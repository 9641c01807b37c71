package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/socks5test"
)

// dohServer is an in-process DNS-over-HTTPS server (HTTP/2 over TLS, with
// httptest's self-signed certificate, pinned by Pin) that answers A
// queries with 192.0.2.1, pads its answers to padded queries (RFC 8467:
// 468-byte blocks) and records what it saw. Handle replaces the answer.
type dohServer struct {
	*httptest.Server
	Pin [32]byte

	conns, closed atomic.Int32 // connections accepted, and closed
	active        Gauge        // requests being handled
	refuseGET     atomic.Bool  // answer a GET with 405 Method Not Allowed

	mu     sync.Mutex
	seen   []dohRequest
	handle func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool // true: it answered
}

// dohRequest is what the server saw of one request.
type dohRequest struct {
	proto, method, path, contentType, accept string
	userAgent                                []string
	length                                   int
	id                                       uint16
	padded                                   bool
}

func newDoHServer(t testing.TB, http2 bool) *dohServer {
	t.Helper()
	return newDoHServerStreams(t, http2, 0)
}

// newDoHServerStreams starts a server that allows streams streams at once
// on a connection (zero: Go's default, 250).
func newDoHServerStreams(t testing.TB, http2 bool, streams int) *dohServer {
	t.Helper()
	s := &dohServer{}
	s.Server = httptest.NewUnstartedServer(s)
	s.EnableHTTP2 = http2
	s.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: streams}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	s.Pin = sha256.Sum256(s.Certificate().RawTBSCertificate)
	return s
}

func (s *dohServer) setHandler(h func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool) {
	s.mu.Lock()
	s.handle = h
	s.mu.Unlock()
}

func (s *dohServer) requests() []dohRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]dohRequest(nil), s.seen...)
}

func (s *dohServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.active.Add(1)
	defer s.active.Add(-1)
	var body []byte
	var err error
	switch {
	case r.Method == http.MethodGet && s.refuseGET.Load():
		s.mu.Lock()
		s.seen = append(s.seen, dohRequest{proto: r.Proto, method: r.Method, path: r.URL.Path})
		s.mu.Unlock()
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	case r.Method == http.MethodGet:
		body, err = base64.RawURLEncoding.DecodeString(r.URL.Query().Get("dns"))
	default:
		body, err = io.ReadAll(r.Body)
	}
	q := new(dns.Msg)
	if err == nil {
		err = q.Unpack(body)
	}
	if err != nil {
		http.Error(w, "not a DNS query", http.StatusBadRequest)
		return
	}
	req := dohRequest{proto: r.Proto, method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
		accept: r.Header.Get("Accept"), userAgent: r.Header["User-Agent"], length: len(body), id: q.Id}
	if opt := q.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			req.padded = req.padded || o.Option() == dns.EDNS0PADDING
		}
	}
	s.mu.Lock()
	s.seen = append(s.seen, req)
	h := s.handle
	s.mu.Unlock()
	if h != nil && h(w, r, q) {
		return
	}
	writeDNS(w, answerA(q, req.padded))
}

// answerA answers q with 192.0.2.1, padded to 468-byte blocks if padded.
func answerA(q *dns.Msg, padded bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA,
		Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)})
	if q.IsEdns0() != nil {
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e73"})
		if padded {
			n := m.Len() + 4
			opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, (468-n%468)%468)})
		}
	}
	return m
}

func writeDNS(w http.ResponseWriter, m *dns.Msg) {
	b, err := m.Pack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/dns-message")
	w.Write(b)
}

// upstreamFor returns the DoH upstream of s, pinned, through d (direct if
// nil), with the query timeout timeout.
func (s *dohServer) upstream(t testing.TB, d egress.Dialer, timeout time.Duration) *HTTPS {
	t.Helper()
	if d == nil {
		d = egress.Direct()
	}
	up, err := New(Spec{Kind: KindHTTPS, Addr: s.Listener.Addr().String(), ServerName: "doh.test",
		Pins: [][32]byte{s.Pin}}, Options{Dialer: d, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	return up.(*HTTPS)
}

// outcome is what a Receiver got.
type outcome struct {
	answer  []byte
	err     error
	overTCP bool
}

// recorder is a Receiver that keeps each outcome, in a channel.
type recorder chan outcome

func (r recorder) Receive(q *Query, answer []byte, err error) {
	r <- outcome{bytes.Clone(answer), err, q.OverTCP}
}

// newQuery prepares a query for name and qtype with the client's ID id,
// as the frontend does, for the identity id (nil: none).
func newQuery(t testing.TB, name string, qtype, msgID uint16, id *Identity, timeout time.Duration) (*Query, recorder) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.Id = msgID
	pkt, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	prepared, meta, err := edns.PrepareQuery(nil, pkt, 1232)
	if err != nil {
		t.Fatal(err)
	}
	r := make(recorder, 1)
	return &Query{Msg: prepared, Limit: meta.Limit, Deadline: time.Now().Add(timeout), Identity: id, Done: r}, r
}

// wait returns the outcome of r, failing the test after 10 s.
func (r recorder) wait(t testing.TB) outcome {
	t.Helper()
	select {
	case o := <-r:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome after 10 s")
	}
	return outcome{}
}

// ask sends one query and returns its outcome.
func ask(t testing.TB, up Upstream, name string, id *Identity) outcome {
	t.Helper()
	q, r := newQuery(t, name, dns.TypeA, 0xBEEF, id, 5*time.Second)
	up.Exchange(q)
	return r.wait(t)
}

// checkA checks that o is a good answer to ask's query for name.
func checkA(t testing.TB, o outcome, name string) *dns.Msg {
	t.Helper()
	if o.err != nil {
		t.Fatalf("%s: %v", name, o.err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(o.answer); err != nil {
		t.Fatalf("%s: the answer does not parse: %v", name, err)
	}
	if m.Id != 0xBEEF || !m.Response || len(m.Question) != 1 || m.Question[0].Name != dns.Fqdn(name) {
		t.Fatalf("%s: got ID %#x response %v question %v, want ID 0xbeef, a response to %s", name, m.Id, m.Response, m.Question, name)
	}
	if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("%s: got answer %v, want A 192.0.2.1", name, m.Answer)
	}
	if !o.overTCP {
		t.Errorf("%s: OverTCP not set", name)
	}
	return m
}

// TestHTTPSAnswer: a query goes as RFC 8484 says (GET over HTTP/2 with the
// query in base64url, the media type accepted, ID 0, no User-Agent, no
// Content-Type: a GET has no body), padded to 128-byte blocks;
// the answer comes back with the client's ID, without the server's
// padding and with its other options.
func TestHTTPSAnswer(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	select {
	case <-up.Ready():
	default:
		t.Fatal("not ready at once")
	}
	if !up.Stream() {
		t.Error("Stream() false")
	}
	if got, want := up.String(), "https://doh.test:"+portOf(t, s.Listener.Addr().String())+"/dns-query at "+s.Listener.Addr().String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	m := checkA(t, ask(t, up, "www.example", nil), "www.example")
	opt := m.IsEdns0()
	if opt == nil {
		t.Fatal("no OPT record in the answer")
	}
	var codes []uint16
	for _, o := range opt.Option {
		codes = append(codes, o.Option())
	}
	if len(codes) != 1 || codes[0] != dns.EDNS0NSID {
		t.Errorf("answer options %v, want the NSID alone (padding removed)", codes)
	}
	reqs := s.requests()
	if len(reqs) != 1 {
		t.Fatalf("the server saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	want := dohRequest{proto: "HTTP/2.0", method: "GET", path: "/dns-query", contentType: "",
		accept: "application/dns-message", length: r.length, padded: true}
	if r.proto != want.proto || r.method != want.method || r.path != want.path || r.contentType != want.contentType ||
		r.accept != want.accept || r.id != 0 || !r.padded || r.userAgent != nil {
		t.Errorf("the server saw %+v, want %+v", r, want)
	}
	if r.length%edns.QueryPadBlock != 0 {
		t.Errorf("query length %d, want a multiple of %d", r.length, edns.QueryPadBlock)
	}
}

func portOf(t testing.TB, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestHTTPSOneConnection: many queries, in a row and at once, share one
// connection.
func TestHTTPSOneConnection(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	id := NewIdentity(egress.Credentials{}, nil, time.Now())
	for i := range 20 {
		checkA(t, ask(t, up, fmt.Sprintf("n%d.example", i), id), fmt.Sprintf("n%d.example", i))
	}
	const parallel = 200
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for i := range parallel {
		wg.Go(func() {
			q, r := newQuery(t, fmt.Sprintf("p%d.example", i), dns.TypeA, uint16(i), id, 5*time.Second)
			up.Exchange(q)
			o := <-r
			m := new(dns.Msg)
			switch {
			case o.err != nil:
				errs <- o.err
			case m.Unpack(o.answer) != nil || m.Id != uint16(i) || m.Question[0].Name != fmt.Sprintf("p%d.example.", i):
				errs <- fmt.Errorf("query %d: answer %v", i, m)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("the server accepted %d connections, want 1", n)
	}
	if up.Dials.Load() != 1 || up.Conns.Peak() != 1 || up.Conns.Now() != 1 {
		t.Errorf("dials %d, connections %d (at most %d), want 1", up.Dials.Load(), up.Conns.Now(), up.Conns.Peak())
	}
	if got := len(s.requests()); got != 20+parallel {
		t.Errorf("the server saw %d requests, want %d", got, 20+parallel)
	}
	if p := s.active.Peak(); p > dohMaxStreams {
		t.Errorf("%d requests at once at the server, want at most %d", p, dohMaxStreams)
	}
}

// TestHTTPSStreamLimit: a server that allows fewer streams at once than
// the queries in flight answers them all, in time.
func TestHTTPSStreamLimit(t *testing.T) {
	s := newDoHServerStreams(t, true, 8)
	up := s.upstream(t, nil, 5*time.Second)
	checkA(t, ask(t, up, "first.example", nil), "first.example")
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 200 {
		wg.Go(func() {
			q, r := newQuery(t, fmt.Sprintf("l%d.example", i), dns.TypeA, 0xBEEF, nil, 5*time.Second)
			up.Exchange(q)
			if o := <-r; o.err != nil {
				failed.Add(1)
				t.Errorf("query %d: %v", i, o.err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d failed; %d connections, at most %d requests at once at the server", failed.Load(), s.conns.Load(), s.active.Peak())
}

// TestHTTPSIdentities: each identity has its own connection; an older
// identity's closes once a newer one appeared and its last query ended.
func TestHTTPSIdentities(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	t0 := time.Now()
	a := NewIdentity(egress.Credentials{User: "a", Pass: "x"}, nil, t0)
	b := NewIdentity(egress.Credentials{User: "b", Pass: "x"}, nil, t0.Add(time.Second))

	// a's query is held at the server while b appears.
	release := make(chan struct{})
	s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool {
		if q.Question[0].Name == "held.example." {
			<-release
		}
		return false
	})
	qa, ra := newQuery(t, "held.example", dns.TypeA, 0xBEEF, a, 5*time.Second)
	up.Exchange(qa)
	waitFor(t, "a's query at the server", func() bool { return len(s.requests()) == 1 })
	checkA(t, ask(t, up, "b.example", b), "b.example")
	if n := up.Conns.Now(); n != 2 {
		t.Fatalf("%d connections open with a query of a in flight and b's, want 2", n)
	}
	close(release)
	checkA(t, ra.wait(t), "held.example")
	waitFor(t, "a's connection closed", func() bool { return up.Conns.Now() == 1 && s.closed.Load() == 1 })
	// b's connection stays and serves b; a's next query opens another.
	checkA(t, ask(t, up, "b2.example", b), "b2.example")
	if n := s.conns.Load(); n != 2 {
		t.Errorf("the server accepted %d connections, want 2", n)
	}
	checkA(t, ask(t, up, "a2.example", a), "a2.example")
	if n := s.conns.Load(); n != 3 {
		t.Errorf("the server accepted %d connections, want 3 (a's retired one is not kept)", n)
	}
	waitFor(t, "a's second connection closed", func() bool { return up.Conns.Now() == 1 && s.closed.Load() == 2 })
	// An identity older than b that comes late (a query of the previous
	// epoch): its connection does not stay either.
	c := NewIdentity(egress.Credentials{User: "c", Pass: "x"}, nil, t0.Add(-time.Second))
	checkA(t, ask(t, up, "c.example", c), "c.example")
	waitFor(t, "c's connection closed", func() bool { return up.Conns.Now() == 1 && s.closed.Load() == 3 })
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
	}
}

// TestHTTPSCancel: Cancel ends a query at once (context.Canceled), resets
// its stream at the server, and leaves the connection to the next ones. A
// deadline does the same with context.DeadlineExceeded.
func TestHTTPSCancel(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	gone := make(chan struct{}, 2)
	s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool {
		if strings.HasPrefix(q.Question[0].Name, "stuck") {
			<-r.Context().Done()
			gone <- struct{}{}
			return true
		}
		return false
	})
	checkA(t, ask(t, up, "first.example", nil), "first.example")

	q, r := newQuery(t, "stuck.example", dns.TypeA, 1, nil, 30*time.Second)
	up.Exchange(q)
	waitFor(t, "the query at the server", func() bool { return len(s.requests()) == 2 })
	start := time.Now()
	q.Cancel()
	if o := r.wait(t); !errors.Is(o.err, context.Canceled) || o.answer != nil {
		t.Fatalf("after Cancel: got %x, %v; want context.Canceled", o.answer, o.err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Cancel took %v", took)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's request was not canceled")
	}

	q, r = newQuery(t, "stuck2.example", dns.TypeA, 2, nil, 300*time.Millisecond)
	up.Exchange(q)
	if o := r.wait(t); !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("past the deadline: got %v, want context.DeadlineExceeded", o.err)
	}
	checkA(t, ask(t, up, "after.example", nil), "after.example")
	if n := s.conns.Load(); n != 1 {
		t.Errorf("the server accepted %d connections, want 1", n)
	}

	// Canceled before it is sent.
	q, r = newQuery(t, "never.example", dns.TypeA, 3, nil, 5*time.Second)
	q.Cancel()
	up.Exchange(q)
	if o := r.wait(t); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("canceled before Exchange: got %v, want context.Canceled", o.err)
	}
}

// TestHTTPSBadAnswers: what the server sends instead of a good answer
// gives the error the frontend classifies, and the connection stays.
func TestHTTPSBadAnswers(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	raw := func(ct string, body []byte) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", ct)
			w.Write(body)
		}
	}
	// edit packs the good answer to q, changed by f.
	edit := func(f func(m *dns.Msg)) func(http.ResponseWriter, *dns.Msg) {
		return func(w http.ResponseWriter, q *dns.Msg) {
			m := answerA(q, false)
			f(m)
			writeDNS(w, m)
		}
	}
	for _, tc := range []struct {
		name   string
		send   func(http.ResponseWriter)
		answer func(http.ResponseWriter, *dns.Msg)
		want   error
	}{
		{"status 500", func(w http.ResponseWriter) { http.Error(w, "oops", 500) }, nil, ErrHTTPStatus},
		{"status 404", func(w http.ResponseWriter) { http.Error(w, "no", 404) }, nil, ErrHTTPStatus},
		{"text/html", raw("text/html", []byte("<html>captive portal</html>")), nil, ErrCorrupt},
		{"no content type", func(w http.ResponseWriter) { w.Header()["Content-Type"] = nil; w.Write(make([]byte, 40)) }, nil, ErrCorrupt},
		{"garbage", raw("application/dns-message", []byte("this is not a DNS message at all")), nil, ErrCorrupt},
		{"empty", raw("application/dns-message", nil), nil, ErrCorrupt},
		{"oversized", raw("application/dns-message", make([]byte, 70000)), nil, ErrCorrupt},
		{"oversized, streamed", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/dns-message")
			for range 20 {
				w.Write(make([]byte, 4000))
				w.(http.Flusher).Flush()
			}
		}, nil, ErrCorrupt},
		{"wrong ID", nil, edit(func(m *dns.Msg) { m.Id = 0x1234 }), ErrCorrupt},
		{"wrong question", nil, edit(func(m *dns.Msg) { m.Question[0].Name = "other.example." }), ErrCorrupt},
		{"wrong type", nil, edit(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }), ErrCorrupt},
		{"not a response", nil, edit(func(m *dns.Msg) { m.Response = false }), ErrCorrupt},
		{"no question, NOERROR", nil, edit(func(m *dns.Msg) { m.Question = nil }), ErrCorrupt},
		{"cut short", nil, func(w http.ResponseWriter, q *dns.Msg) {
			b, _ := answerA(q, false).Pack()
			w.Header().Set("Content-Type", "application/dns-message")
			w.Write(b[:len(b)-3])
		}, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool {
				if tc.send != nil {
					tc.send(w)
				} else {
					tc.answer(w, q)
				}
				return true
			})
			o := ask(t, up, "bad.example", nil)
			if !errors.Is(o.err, tc.want) || o.answer != nil {
				t.Errorf("got %x, %v; want an error wrapping %v", o.answer, o.err, tc.want)
			}
		})
	}
	// Accepted: a media type with a parameter, in capitals; REFUSED
	// without a question.
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, *dns.Msg)
	}{
		{"media type parameter", func(w http.ResponseWriter, q *dns.Msg) {
			b, _ := answerA(q, false).Pack()
			w.Header().Set("Content-Type", "Application/DNS-Message; charset=binary")
			w.Write(b)
		}},
		{"REFUSED without question", edit(func(m *dns.Msg) { m.Question, m.Answer, m.Rcode = nil, nil, dns.RcodeRefused })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool { tc.answer(w, q); return true })
			o := ask(t, up, "ok.example", nil)
			m := new(dns.Msg)
			if o.err != nil || m.Unpack(o.answer) != nil || m.Id != 0xBEEF {
				t.Errorf("got %v, %v; want an answer with ID 0xbeef", m, o.err)
			}
		})
	}
	s.setHandler(nil)
	checkA(t, ask(t, up, "good.example", nil), "good.example")
	if n := s.conns.Load(); n != 1 {
		t.Errorf("the server accepted %d connections, want 1", n)
	}
}

// TestHTTPSRetryAfter: a 429 with Retry-After keeps the identity from
// asking until then (the next query fails at once, unsent); another
// identity still asks.
func TestHTTPSRetryAfter(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	a := NewIdentity(egress.Credentials{User: "a"}, nil, time.Now())
	s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return true
	})
	o := ask(t, up, "x.example", a)
	var se *HTTPStatusError
	if !errors.As(o.err, &se) || se.Code != 429 || se.RetryAfter != 30*time.Second || se.Held {
		t.Fatalf("got %v, want a 429 retry after 30 s", o.err)
	}
	s.setHandler(nil)
	o = ask(t, up, "y.example", a)
	if !errors.As(o.err, &se) || se.Code != 429 || !se.Held || se.RetryAfter <= 25*time.Second {
		t.Fatalf("while held: got %v, want a held 429", o.err)
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("the server saw %d requests, want 1 (none while held)", n)
	}
	b := NewIdentity(egress.Credentials{User: "b"}, nil, a.Born)
	checkA(t, ask(t, up, "z.example", b), "z.example")

	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "0": 0, "7": 7 * time.Second, "100000": maxRetryAfter, "-3": 0, "soon": 0,
		now.Add(20 * time.Second).Format(http.TimeFormat): 20 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestHTTPSServerCloses: a connection the server closes is replaced at
// the next query.
func TestHTTPSServerCloses(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	checkA(t, ask(t, up, "one.example", nil), "one.example")
	s.CloseClientConnections()
	waitFor(t, "the connection closed", func() bool { return up.Conns.Now() == 0 })
	checkA(t, ask(t, up, "two.example", nil), "two.example")
	if n := s.conns.Load(); n != 2 {
		t.Errorf("the server accepted %d connections, want 2", n)
	}
}

// TestHTTPSStall: a connection that goes silent (its packets lost) is
// pinged and closed by the middle of the query's deadline; the query is
// asked again on a new connection, and answered in time.
func TestHTTPSStall(t *testing.T) {
	s := newDoHServer(t, true)
	f := newFreezer(t, s.Listener.Addr().String())
	const timeout = 2 * time.Second
	up, err := New(Spec{Kind: KindHTTPS, Addr: f.addr, ServerName: "doh.test", Pins: [][32]byte{s.Pin}},
		Options{Dialer: egress.Direct(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	checkA(t, ask(t, up, "before.example", nil), "before.example")
	f.freeze()
	q, r := newQuery(t, "lost.example", dns.TypeA, 0xBEEF, nil, timeout)
	start := time.Now()
	up.Exchange(q)
	checkA(t, r.wait(t), "lost.example")
	t.Logf("answered after %v", time.Since(start))
	if n := s.conns.Load(); n != 2 {
		t.Errorf("the server accepted %d connections, want 2", n)
	}
	if n := up.(*HTTPS).Conns.Now(); n != 1 {
		t.Errorf("%d connections open, want 1 (the silent one closed)", n)
	}
}

// freezer forwards TCP connections to a server; freeze makes the ones
// open so far drop every byte, both ways (a path that went dead).
type freezer struct {
	addr   string
	mu     sync.Mutex
	frozen map[net.Conn]*atomic.Bool
}

func newFreezer(t testing.TB, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{addr: ln.Addr().String(), frozen: map[net.Conn]*atomic.Bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for c := range f.frozen {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			dead := new(atomic.Bool)
			f.mu.Lock()
			f.frozen[c], f.frozen[s] = dead, dead
			f.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 16<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						dst.Close()
						src.Close()
						return
					}
					if !dead.Load() {
						dst.Write(buf[:n])
					}
				}
			}
			wg.Go(func() { pipe(s, c) })
			wg.Go(func() { pipe(c, s) })
		}
	})
	return f
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.frozen {
		d.Store(true)
	}
}

// TestHTTPSClose: Close ends the queries in flight with ErrClosed, closes
// the connections, and later queries end at once.
func TestHTTPSClose(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool {
		<-r.Context().Done()
		return true
	})
	q, r := newQuery(t, "stuck.example", dns.TypeA, 1, nil, 30*time.Second)
	up.Exchange(q)
	waitFor(t, "the query at the server", func() bool { return len(s.requests()) == 1 })
	up.Close()
	if o := r.wait(t); !errors.Is(o.err, ErrClosed) {
		t.Fatalf("in flight at Close: got %v, want ErrClosed", o.err)
	}
	waitFor(t, "the connection closed", func() bool { return up.Conns.Now() == 0 && s.closed.Load() == 1 })
	if o := ask(t, up, "later.example", nil); !errors.Is(o.err, ErrClosed) {
		t.Fatalf("after Close: got %v, want ErrClosed", o.err)
	}
}

// TestHTTPSHTTP1: a server without HTTP/2 gets its queries one at a time
// on one kept connection.
func TestHTTPSHTTP1(t *testing.T) {
	s := newDoHServer(t, false)
	up := s.upstream(t, nil, 5*time.Second)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			q, r := newQuery(t, fmt.Sprintf("h%d.example", i), dns.TypeA, 0xBEEF, nil, 5*time.Second)
			up.Exchange(q)
			checkA(t, <-r, fmt.Sprintf("h%d.example", i))
		})
	}
	wg.Wait()
	reqs := s.requests()
	if len(reqs) != 20 || reqs[0].proto != "HTTP/1.1" {
		t.Fatalf("the server saw %d requests (%+v), want 20 over HTTP/1.1", len(reqs), reqs[:min(1, len(reqs))])
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("the server accepted %d connections, want 1", n)
	}
}

// TestHTTPSCertificates: a certificate that matches no pin is refused
// (ErrCertificate), and so is, without pins, a self-signed one the system
// does not trust, each on the first connection (no second try); one pin of
// several is enough (see TestVerifyPinned for chains).
func TestHTTPSCertificates(t *testing.T) {
	s := newDoHServer(t, true)
	for _, tc := range []struct {
		name string
		pins [][32]byte
		want func(error) bool
	}{
		{"other pin", [][32]byte{{1, 2, 3}}, func(err error) bool { return errors.Is(err, ErrCertificate) }},
		{"no pin, system roots", nil, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{"one of two pins", [][32]byte{{1, 2, 3}, s.Pin}, func(err error) bool { return err == nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, err := New(Spec{Kind: KindHTTPS, Addr: s.Listener.Addr().String(), ServerName: "example.com", Pins: tc.pins},
				Options{Dialer: egress.Direct(), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			before := s.conns.Load()
			o := ask(t, up, "x.example", nil)
			if !tc.want(o.err) {
				t.Errorf("got %v", o.err)
			}
			// A refused certificate is not tried again.
			if n := s.conns.Load() - before; n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

// TestHTTPSThroughSOCKS: through a SOCKS5 proxy, the address goes to it as
// a name (never looked up here) with the identity's credentials; the TLS
// session is never resumed, and the URL names the server, not the address.
func TestHTTPSThroughSOCKS(t *testing.T) {
	s := newDoHServer(t, true)
	port := portOf(t, s.Listener.Addr().String())
	proxy := socks5test.NewServer(t, socks5test.Config{AnyCredentials: true,
		Hosts: map[string]string{"resolver.invalid": "127.0.0.1"}})
	d := egress.SOCKS5(egress.SOCKSConfig{Addr: proxy.Addr, Isolation: true})
	up, err := New(Spec{Kind: KindHTTPS, Addr: "resolver.invalid:" + port, ServerName: "dns.example",
		Pins: [][32]byte{s.Pin}, Path: "/resolve?x=1"}, Options{Dialer: d, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	h := up.(*HTTPS)
	if !h.tls.SessionTicketsDisabled || h.tls.ClientSessionCache != nil {
		t.Error("session resumption through a proxy")
	}
	var paths []string
	s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool {
		s.mu.Lock()
		paths = append(paths, r.Host+r.URL.RequestURI())
		s.mu.Unlock()
		return false
	})
	a := NewIdentity(egress.Credentials{User: "epoch-1", Pass: "p"}, nil, time.Now())
	for i := range 5 {
		checkA(t, ask(t, up, fmt.Sprintf("s%d.example", i), a), fmt.Sprintf("s%d.example", i))
	}
	reqs := proxy.Requests()
	if len(reqs) != 1 || reqs[0].Target != "resolver.invalid:"+port || reqs[0].User != "epoch-1" || reqs[0].Err != nil {
		t.Fatalf("SOCKS sessions %+v, want one CONNECT to resolver.invalid:%s as epoch-1", reqs, port)
	}
	s.mu.Lock()
	// The path's own query string comes first, then the GET's dns=.
	if want := "dns.example:" + port + "/resolve?x=1&dns="; len(paths) != 5 || !strings.HasPrefix(paths[0], want) {
		t.Errorf("requests for %q, want %q...", paths, want)
	}
	s.mu.Unlock()

	// The proxy refuses: the error says it was SOCKS.
	proxy.Set(socks5test.Config{Refuse: 0x05})
	b := NewIdentity(egress.Credentials{User: "epoch-2", Pass: "p"}, nil, a.Born.Add(time.Second))
	if o := ask(t, up, "refused.example", b); !errors.Is(o.err, egress.ErrSOCKS) {
		t.Errorf("through a refusing proxy: got %v, want egress.ErrSOCKS", o.err)
	}
}

// TestNewHTTPS: the URL made of the spec, and the specs refused.
func TestNewHTTPS(t *testing.T) {
	d := egress.Direct()
	for _, tc := range []struct {
		addr, name, path string
		want             string // the URL; empty: refused
	}{
		{"192.0.2.1:443", "dns.example", "", "https://dns.example/dns-query"},
		{"192.0.2.1:8443", "dns.example", "/q", "https://dns.example:8443/q"},
		{"192.0.2.1:443", "dns.example:8443", "", "https://dns.example:8443/dns-query"},
		{"192.0.2.1:443", "2001:db8::1", "", "https://[2001:db8::1]/dns-query"},
		{"192.0.2.1:853", "2001:db8::1", "", "https://[2001:db8::1]:853/dns-query"},
		{"192.0.2.1:443", "192.0.2.1", "/dns-query?ct", "https://192.0.2.1/dns-query?ct"},
		{"192.0.2.1:443", "dns.example", "dns-query", ""},
		{"192.0.2.1:443", "", "", ""},
		{"192.0.2.1:443", "dns/example", "", ""},
	} {
		up, err := New(Spec{Kind: KindHTTPS, Addr: tc.addr, ServerName: tc.name, Path: tc.path}, Options{Dialer: d})
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s %q %q: accepted as %s", tc.addr, tc.name, tc.path, up.(*HTTPS).url)
		case tc.want == "" && !errors.Is(err, ErrSpec):
			t.Errorf("%s %q %q: got %v, want ErrSpec", tc.addr, tc.name, tc.path, err)
		case tc.want != "" && err != nil:
			t.Errorf("%s %q %q: %v", tc.addr, tc.name, tc.path, err)
		case tc.want != "" && up.(*HTTPS).url.String() != tc.want:
			t.Errorf("%s %q %q: URL %s, want %s", tc.addr, tc.name, tc.path, up.(*HTTPS).url, tc.want)
		}
		if up != nil {
			up.Close()
		}
	}
	if _, err := New(Spec{Kind: KindHTTPS, Addr: "dns.example:443", ServerName: "dns.example"}, Options{Dialer: d}); !errors.Is(err, ErrSpec) {
		t.Errorf("a host name directly: got %v, want ErrSpec", err)
	}
}

// FuzzReadAnswer: whatever the server's response (status, headers, body),
// readAnswer returns a checked, unpadded answer, or an error the frontend
// classifies.
func FuzzReadAnswer(f *testing.F) {
	q := queryMsg("www.example.org", dns.TypeA, true)
	qb, _ := edns.AppendStreamQuery(nil, pack(f, q), edns.StreamQuery{Block: edns.QueryPadBlock, NewOPT: true})
	good := pack(f, bigAnswer(q, 2, 100))
	f.Add(200, "application/dns-message", "", int64(-1), good)
	f.Add(200, "application/dns-message", "", int64(len(good)), good)
	f.Add(200, "application/dns-message; x=y", "", int64(70000), good)
	f.Add(200, "text/html", "", int64(-1), []byte("<html>"))
	f.Add(429, "text/plain", "30", int64(-1), []byte("slow down"))
	f.Add(503, "", "Wed, 21 Oct 2015 07:28:00 GMT", int64(0), []byte(nil))
	f.Add(200, "application/dns-message", "", int64(-1), make([]byte, 70000))
	now := time.Date(2015, 10, 21, 7, 27, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, ct, ra string, length int64, body []byte) {
		resp := &http.Response{StatusCode: status, ContentLength: length, Body: io.NopCloser(bytes.NewReader(body)),
			Header: http.Header{"Content-Type": {ct}, "Retry-After": {ra}}}
		out, err := readAnswer([]byte("dst"), resp, qb, now)
		if string(out[:3]) != "dst" {
			t.Fatalf("dst lost: %q", out)
		}
		out = out[3:]
		var se *HTTPStatusError
		switch {
		case err == nil:
			if status != 200 || !isDNSMessage(ct) || len(out) > maxMsgLen || len(out) > len(body) {
				t.Fatalf("accepted status %d, %q, %d bytes", status, ct, len(out))
			}
			if _, err := checkAnswer(out, qb); err != nil {
				t.Fatalf("accepted an answer checkAnswer refuses: %v", err)
			}
			if hasPadding(out) {
				t.Fatal("Padding left in the answer")
			}
		case errors.As(err, &se):
			if status == 200 || se.Code != status || se.RetryAfter < 0 || se.RetryAfter > maxRetryAfter {
				t.Fatalf("status %d: %+v", status, se)
			}
		case !errors.Is(err, ErrCorrupt) || len(out) != 0:
			t.Fatalf("status %d: error %v, %d bytes", status, err, len(out))
		}
	})
}

// TestHTTPSPinnedCA: with a CA's pin, a server whose certificate that CA
// issued for the name is trusted; one that presents its own certificate
// beside a copy of the CA's is not.
func TestHTTPSPinnedCA(t *testing.T) {
	day := time.Now().Add(-time.Hour)
	ca := makeCert(t, "Pinned CA", nil, day, nil)
	leaf := makeCert(t, "dns.example", []string{"dns.example"}, day, &ca)
	rogueCA := makeCert(t, "Rogue CA", nil, day, nil)
	rogue := makeCert(t, "dns.example", []string{"dns.example"}, day, &rogueCA)
	for _, tc := range []struct {
		name  string
		chain []testCert
		ok    bool
	}{
		{"issued by the CA", []testCert{leaf, ca}, true},
		{"a copy of the CA beside another certificate", []testCert{rogue, ca}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &dohServer{}
			s.Server = httptest.NewUnstartedServer(s)
			s.EnableHTTP2 = true
			s.Config.ErrorLog = log.New(io.Discard, "", 0)
			cert := tls.Certificate{PrivateKey: tc.chain[0].key}
			for _, c := range tc.chain {
				cert.Certificate = append(cert.Certificate, c.cert.Raw)
			}
			s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			s.StartTLS()
			defer s.Close()
			up, err := New(Spec{Kind: KindHTTPS, Addr: s.Listener.Addr().String(), ServerName: "dns.example",
				Pins: [][32]byte{ca.pin()}}, Options{Dialer: egress.Direct(), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			o := ask(t, up, "x.example", nil)
			if tc.ok {
				checkA(t, o, "x.example")
			} else if !errors.Is(o.err, ErrCertificate) {
				t.Errorf("got %v, want ErrCertificate", o.err)
			}
		})
	}
}

// TestHTTPSQueryIsolation: with a new identity per query (per-query
// isolation), each query has its own connection, closed once it is
// answered and a newer identity exists: nothing piles up. Beyond
// Options.MaxConns identities in flight at once, a query fails at once
// (ErrOverload).
func TestHTTPSQueryIsolation(t *testing.T) {
	s := newDoHServer(t, true)
	up, err := New(Spec{Kind: KindHTTPS, Addr: s.Listener.Addr().String(), ServerName: "doh.test",
		Pins: [][32]byte{s.Pin}}, Options{Dialer: egress.Direct(), Timeout: 5 * time.Second, MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	h := up.(*HTTPS)
	born := time.Now()
	fresh := func(i int) *Identity {
		return NewIdentity(egress.Credentials{User: fmt.Sprint("q", i), Pass: "x"}, nil, born.Add(time.Duration(i)*time.Millisecond))
	}
	for i := range 20 {
		checkA(t, ask(t, up, fmt.Sprintf("i%d.example", i), fresh(i)), fmt.Sprintf("i%d.example", i))
	}
	// A query ends (Finish) a moment before its transport lets it go.
	waitFor(t, "the older connections closed, the last query let go", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		idle := true
		for _, tr := range h.transports {
			idle = idle && tr.inflight == 0
		}
		return idle && h.Conns.Now() == 1 && s.closed.Load() == 19
	})
	if n := s.conns.Load(); n != 20 {
		t.Errorf("the server accepted %d connections, want 20", n)
	}
	h.mu.Lock()
	kept := len(h.transports)
	h.mu.Unlock()
	if kept != 1 {
		t.Errorf("%d transports kept, want 1", kept)
	}

	release := make(chan struct{})
	s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool {
		if strings.HasPrefix(q.Question[0].Name, "held") {
			<-release
		}
		return false
	})
	var rs []recorder
	for i := range 3 {
		q, r := newQuery(t, fmt.Sprintf("held%d.example", i), dns.TypeA, 0xBEEF, fresh(100+i), 5*time.Second)
		up.Exchange(q)
		rs = append(rs, r)
	}
	waitFor(t, "three queries at the server", func() bool {
		for i, r := range rs {
			select {
			case o := <-r:
				t.Fatalf("held%d ended before its release: %v", i, o.err)
			default:
			}
		}
		return s.active.Now() == 3
	})
	if o := ask(t, up, "over.example", fresh(200)); !errors.Is(o.err, ErrOverload) {
		t.Errorf("a fourth identity in flight: got %v, want ErrOverload", o.err)
	}
	close(release)
	for i, r := range rs {
		checkA(t, r.wait(t), fmt.Sprintf("held%d.example", i))
	}
	checkA(t, ask(t, up, "after.example", fresh(300)), "after.example")
}

// TestHTTPSRefresh: Refresh closes the idle connection; the next query
// connects again (and checks the certificate again).
func TestHTTPSRefresh(t *testing.T) {
	s := newDoHServer(t, true)
	up := s.upstream(t, nil, 5*time.Second)
	checkA(t, ask(t, up, "one.example", nil), "one.example")
	up.Refresh()
	waitFor(t, "the idle connection closed", func() bool { return up.Conns.Now() == 0 })
	checkA(t, ask(t, up, "two.example", nil), "two.example")
	if n := s.conns.Load(); n != 2 {
		t.Errorf("the server accepted %d connections, want 2", n)
	}
}

// TestHTTPSNoGoroutineLeak: once the upstream and the server are closed,
// no goroutine of theirs is left (queries answered, canceled and in
// flight at Close included).
func TestHTTPSNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		s := newDoHServer(t, true)
		defer s.Close()
		up := s.upstream(t, nil, 5*time.Second)
		for i := range 5 {
			checkA(t, ask(t, up, fmt.Sprintf("g%d.example", i), NewIdentity(egress.Credentials{User: fmt.Sprint(i)}, nil, time.Now())), fmt.Sprintf("g%d.example", i))
		}
		s.setHandler(func(w http.ResponseWriter, r *http.Request, q *dns.Msg) bool {
			<-r.Context().Done()
			return true
		})
		q, r := newQuery(t, "canceled.example", dns.TypeA, 1, nil, 5*time.Second)
		up.Exchange(q)
		waitFor(t, "the query at the server", func() bool { return s.active.Now() == 1 })
		q.Cancel()
		r.wait(t)
		q, r = newQuery(t, "closed.example", dns.TypeA, 1, nil, 5*time.Second)
		up.Exchange(q)
		waitFor(t, "the query at the server", func() bool { return s.active.Now() == 1 })
		up.Close()
		r.wait(t)
		s.CloseClientConnections()
	}()
	waitFor(t, "the goroutines gone", func() bool { return runtime.NumGoroutine() <= base })
}

// TestHTTPSPostFallback: a server that refuses GET (405) gets the query
// again as a POST (application/dns-message, the same padded query), and
// every later query as a POST alone; the log says so once.
func TestHTTPSPostFallback(t *testing.T) {
	s := newDoHServer(t, true)
	s.refuseGET.Store(true)
	var logs logtest.Buffer
	up, err := New(Spec{Kind: KindHTTPS, Addr: s.Listener.Addr().String(), ServerName: "doh.test",
		Pins: [][32]byte{s.Pin}}, Options{Dialer: egress.Direct(), Timeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	for _, name := range []string{"one.example", "two.example", "three.example"} {
		checkA(t, ask(t, up, name, nil), name)
	}
	var methods []string
	for _, r := range s.requests() {
		methods = append(methods, r.method)
		if r.method == http.MethodPost && (r.contentType != dohMediaType || r.length%edns.QueryPadBlock != 0) {
			t.Errorf("a POST with content type %q and %d bytes, want %s, padded", r.contentType, r.length, dohMediaType)
		}
	}
	if want := []string{"GET", "POST", "POST", "POST"}; !slices.Equal(methods, want) {
		t.Errorf("the server saw %v, want %v", methods, want)
	}
	if n := strings.Count(logs.String(), "refuses GET"); n != 1 {
		t.Errorf("%d log lines about GET, want 1:\n%s", n, logs.String())
	}
}
