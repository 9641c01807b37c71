package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// ErrHTTPStatus: a DNS-over-HTTPS server answered with an HTTP status
// other than 200 OK. The error is an *HTTPStatusError.
var ErrHTTPStatus = errors.New("upstream: HTTP error status")

// HTTPStatusError is a DNS-over-HTTPS answer with an HTTP status other
// than 200, or the refusal to ask while a server's Retry-After runs.
type HTTPStatusError struct {
	Code int // 429, 503, ...
	// RetryAfter is how long the server asked to wait (429 or 503 with a
	// Retry-After header), at most maxRetryAfter; zero if it did not.
	RetryAfter time.Duration
	// Held: no query was sent, the server's Retry-After still runs.
	Held bool
}

func (e *HTTPStatusError) Error() string {
	s := "HTTP status " + strconv.Itoa(e.Code)
	if t := http.StatusText(e.Code); t != "" {
		s += " " + t
	}
	switch {
	case e.Held:
		return fmt.Sprintf("not asking: %s, the server asked to wait %v", s, e.RetryAfter.Round(time.Second))
	case e.RetryAfter > 0:
		return fmt.Sprintf("%s, retry after %v", s, e.RetryAfter.Round(time.Second))
	}
	return s
}

func (e *HTTPStatusError) Unwrap() error { return ErrHTTPStatus }

// DNS over HTTPS.
const (
	dohMediaType = "application/dns-message"
	dohPath      = "/dns-query" // the path when Spec.Path is empty
	// dohIdleTimeout closes a connection that carried no query for this
	// long (a server closes it sooner if it likes).
	dohIdleTimeout = 2 * time.Minute
	// maxRetryAfter bounds how long a Retry-After keeps queries from a
	// server (on one identity: another circuit is another client).
	maxRetryAfter = time.Minute
	// dohMaxStreams bounds the queries in flight on one identity's
	// connection: the number of concurrent streams RFC 9113 section 6.5.2
	// asks servers to allow at least (unbound's and h2o's default). More
	// wait for one to end. net/http's own wait (StrictMaxConcurrentRequests)
	// cannot be used: in Go 1.26 the request waiting for a stream holds
	// the connection's header lock while the others, blocked on that lock,
	// keep their stream reservations, which count against the limit, so
	// nothing moves until some request's context ends (with it,
	// TestHTTPSStreamLimit stalls).
	dohMaxStreams = 100
)

// HTTPS is the upstream of a DNS-over-HTTPS resolver ([RFC 8484]): each
// query is a GET of https://ServerName[:port]/Path?dns=QUERY (the DNS
// message in base64url, RFC 8484 section 4.1), over HTTP/2 and TLS, on a
// connection
// the Dialer opened to Spec.Addr (through SOCKS a host name, which only
// the proxy resolves; the URL's host is never looked up).
//
// Each identity (its SOCKS credentials, hence its Tor circuit) has its own
// net/http Transport holding one connection, on which queries go as
// concurrent HTTP/2 streams, at most dohMaxStreams at once (more wait for
// one to end); a server that allows fewer streams at once gets more
// connections under such a load (net/http opens them), and one without
// HTTP/2 gets one query at a time over HTTP/1.1. An identity's transport
// closes once a newer identity has appeared (the next isolation epoch, or
// the next query with per-query isolation) and its last query has ended;
// an idle connection closes after dohIdleTimeout, a silent one after an
// unanswered HTTP/2 ping (by the middle of a query's deadline). A query
// whose connection fails under it, or cannot be made, is asked once more
// on a new one (DNS queries are idempotent), unless the server's
// certificate was refused. At most Options.MaxConns transports exist at
// once (ErrOverload beyond).
//
// GET, not POST: a GET is one HEADERS frame, a POST a HEADERS and a DATA
// frame, which net/http writes apart. Through Tor the exit (or the onion
// service's Tor) then writes the second piece to the server while the
// first is unacknowledged; Tor sets no TCP_NODELAY, so Nagle holds it
// until the server's delayed ACK, up to 40 ms on every query (measured
// through the private Tor network: POST 48 ms median, GET 8-12 ms, DoT 8
// ms). RFC 8484 requires servers to take both; one that refuses GET (405
// Method Not Allowed, 414 URI Too Long, 501 Not Implemented) is asked
// again with POST (application/dns-message), and with POST from then on.
//
// Queries go with ID 0 (RFC 8484 section 4.1, for caches) and an EDNS
// Padding option to a multiple of 128 bytes (RFC 8467); the answer gets
// the client's ID back and loses the server's padding. The answer must be
// 200 OK, application/dns-message, at most 65535 bytes, and a DNS message
// answering the query (ErrCorrupt otherwise); other statuses give an
// *HTTPStatusError, and a 429 or 503 with Retry-After keeps the identity
// from asking until then (at most maxRetryAfter).
//
// [RFC 8484]: https://www.rfc-editor.org/rfc/rfc8484
type HTTPS struct {
	spec Spec
	opts Options
	log  *slog.Logger
	url  *url.URL
	// getQuery is the URL's query string and "dns=", or "dns=" alone,
	// which a GET's query completes.
	getQuery string
	// header is the header of a POST, getHeader of a GET; read-only.
	header, getHeader http.Header
	// post: the server refused a GET, every query is a POST.
	post   atomic.Bool
	tls    *tls.Config
	ready  chan struct{}
	ctx    context.Context // ends at Close: dials stop
	cancel context.CancelFunc

	mu         sync.Mutex
	transports map[egress.Credentials]*dohTransport
	newest     time.Time // the Born of the newest identity seen
	closed     bool

	// Conns counts the connections open to the server (now and the most
	// at once); Dials counts the connections made.
	Conns Gauge
	Dials atomic.Int64
}

var _ Upstream = (*HTTPS)(nil)

// NewHTTPS returns the DNS-over-HTTPS upstream of spec. New calls it,
// after checking spec; call New rather than this.
//
// spec.ServerName is the URL's host and the TLS server name; it may carry
// a port (as DNS stamps write a non-default one), which then goes into
// the URL only. Otherwise the URL has Addr's port, unless it is 443.
// spec.Path is the URL's path ("/dns-query" if empty), and may carry a
// query string.
func NewHTTPS(spec Spec, opts Options) (*HTTPS, error) {
	opts.withDefaults()
	_, port, err := net.SplitHostPort(spec.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrSpec, spec.String(), err)
	}
	host, authority := spec.ServerName, spec.ServerName
	if h, _, err := net.SplitHostPort(spec.ServerName); err == nil {
		host = h
	} else {
		if strings.Contains(host, ":") {
			authority = "[" + host + "]"
		}
		if port != "443" {
			authority = net.JoinHostPort(host, port)
		}
	}
	if host == "" {
		return nil, fmt.Errorf("%w %s: no server name", ErrSpec, spec.String())
	}
	path := spec.Path
	if path == "" {
		path = dohPath
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("%w %s: path %q does not start with /", ErrSpec, spec.String(), path)
	}
	u, err := url.Parse("https://" + authority + path)
	if err != nil || u.Host != authority {
		return nil, fmt.Errorf("%w %s: not a URL: https://%s%s", ErrSpec, spec.String(), authority, path)
	}
	ctx, cancel := context.WithCancel(context.Background())
	getQuery := "dns="
	if u.RawQuery != "" {
		getQuery = u.RawQuery + "&dns="
	}
	h := &HTTPS{
		spec: spec,
		opts: opts,
		log:  opts.Logger,
		url:  u,
		header: http.Header{
			"Content-Type": {dohMediaType},
			"Accept":       {dohMediaType},
			// Not sent: no User-Agent (net/http's would tell the client
			// apart), and the request is idempotent, so that net/http
			// asks again on a fresh connection when a kept one turns out
			// to be closed.
			"User-Agent":      nil,
			"Idempotency-Key": nil,
		},
		getHeader:  http.Header{"Accept": {dohMediaType}, "User-Agent": nil},
		getQuery:   getQuery,
		tls:        clientTLSConfig(host, spec.Pins, opts.Dialer.Proxied(), []string{"h2", "http/1.1"}, opts.Now),
		ready:      make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		transports: make(map[egress.Credentials]*dohTransport),
	}
	close(h.ready)
	return h, nil
}

// String is the URL, and the address connected to when its host is not
// that of the URL.
func (u *HTTPS) String() string {
	s := u.url.String()
	if host, _, _ := net.SplitHostPort(u.spec.Addr); host != u.url.Hostname() {
		s += " at " + u.spec.Addr
	}
	return s
}

func (u *HTTPS) Ready() <-chan struct{} { return u.ready }
func (u *HTTPS) Stream() bool           { return true }

// Run waits for ctx: the connections time out by themselves.
func (u *HTTPS) Run(ctx context.Context) { <-ctx.Done() }

// Refresh closes the idle connections: the next query connects again, and
// so checks the server's certificate again.
func (u *HTTPS) Refresh() {
	u.log.Info("Reconnecting to the DNS-over-HTTPS server to check its certificate")
	u.mu.Lock()
	ts := make([]*dohTransport, 0, len(u.transports))
	for _, t := range u.transports {
		ts = append(ts, t)
	}
	u.mu.Unlock()
	for _, t := range ts {
		t.rt.CloseIdleConnections()
	}
}

// Close closes every connection; the queries in flight end with ErrClosed
// and later ones at once.
func (u *HTTPS) Close() error {
	u.mu.Lock()
	u.closed = true
	ts := u.transports
	u.transports = nil
	u.mu.Unlock()
	u.cancel()
	for _, t := range ts {
		t.close()
	}
	return nil
}

// dohTransport carries the queries of one identity: a net/http Transport
// with at most one connection (HTTP/2 streams, or one HTTP/1.1 request at
// a time on a server without HTTP/2).
type dohTransport struct {
	u     *HTTPS
	cred  egress.Credentials
	rt    *http.Transport
	slots chan struct{} // a query in flight holds one

	// Under u.mu.
	born     time.Time // the newest Born of its identities
	inflight int
	retired  bool      // a newer identity exists: close when idle
	hold     time.Time // Retry-After: no query until then
	holdErr  *HTTPStatusError

	connMu sync.Mutex
	conns  map[*trackedConn]struct{}
	dead   bool // closed: a connection that comes up now is closed at once
}

// Exchange implements Upstream: the query goes on a goroutine of its own.
func (u *HTTPS) Exchange(q *Query) {
	t, err := u.acquire(q.Identity, time.Now())
	if err != nil {
		q.Finish(nil, err)
		return
	}
	go u.exchange(t, q)
}

// acquire returns the transport of id's credentials, made if needed, with
// one more query in flight. A newer identity retires the older ones'.
func (u *HTTPS) acquire(id *Identity, now time.Time) (*dohTransport, error) {
	var cred egress.Credentials
	var born time.Time
	if id != nil {
		cred, born = id.Credentials, id.Born
	}
	var drop []*dohTransport
	defer func() {
		for _, t := range drop {
			t.close()
		}
	}()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, ErrClosed
	}
	t := u.transports[cred]
	if t == nil {
		if len(u.transports) >= u.opts.MaxConns {
			return nil, ErrOverload
		}
		t = u.newTransport(cred, born)
		// An identity older than the newest, in flight when it came:
		// its connection closes with its last query.
		t.retired = born.Before(u.newest)
		u.transports[cred] = t
	}
	if born.After(t.born) {
		t.born = born
	}
	if born.After(u.newest) {
		u.newest = born
		for c, o := range u.transports {
			if o.born.Before(born) {
				o.retired = true
				if o.inflight == 0 {
					delete(u.transports, c)
					drop = append(drop, o)
				}
			}
		}
	}
	if now.Before(t.hold) {
		return nil, fmt.Errorf("%s: %w", u.url.Host, &HTTPStatusError{Code: t.holdErr.Code, RetryAfter: t.hold.Sub(now), Held: true})
	}
	t.inflight++
	return t, nil
}

// release ends a query of t; a retired transport closes with its last.
func (u *HTTPS) release(t *dohTransport) {
	u.mu.Lock()
	t.inflight--
	drop := t.retired && t.inflight == 0 && u.transports[t.cred] == t
	if drop {
		delete(u.transports, t.cred)
	}
	u.mu.Unlock()
	if drop {
		t.close()
	}
}

// held records a server's Retry-After for t's identity.
func (u *HTTPS) held(t *dohTransport, e *HTTPStatusError, now time.Time) {
	u.mu.Lock()
	if until := now.Add(e.RetryAfter); until.After(t.hold) {
		t.hold, t.holdErr = until, e
	}
	u.mu.Unlock()
}

func (u *HTTPS) newTransport(cred egress.Credentials, born time.Time) *dohTransport {
	t := &dohTransport{u: u, cred: cred, born: born, conns: make(map[*trackedConn]struct{}),
		slots: make(chan struct{}, dohMaxStreams)}
	// A quarter of the query timeout without a frame, then a quarter for
	// the ping's answer: a connection gone silent under a query is closed
	// by the middle of its deadline, leaving time to ask again.
	quarter := u.opts.Timeout / 4
	t.rt = &http.Transport{
		DialTLSContext: t.dialTLS,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("upstream: DNS over HTTPS never dials without TLS")
		},
		ForceAttemptHTTP2:      true,
		MaxConnsPerHost:        1,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        dohIdleTimeout,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 16 << 10,
		HTTP2: &http.HTTP2Config{
			// A connection that goes silent is pinged, and closed if the
			// ping goes unanswered: the next query reconnects.
			SendPingTimeout: quarter,
			PingTimeout:     quarter,
		},
	}
	return t
}

// dialTLS opens a connection to the server for t's identity: TCP through
// the Dialer, then TLS, within the query timeout (net/http dials apart from
// any request, so that a canceled query's dial still serves the next one)
// and until Close.
func (t *dohTransport) dialTLS(context.Context, string, string) (net.Conn, error) {
	u := t.u
	ctx, cancel := context.WithTimeout(u.ctx, u.opts.Timeout)
	defer cancel()
	raw, err := u.opts.Dialer.DialTCP(ctx, u.spec.Addr, t.cred, nil)
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("connecting to %s: %w", u.spec.Addr, err))
	}
	tc := &trackedConn{Conn: raw, t: t}
	if !t.track(tc) {
		raw.Close()
		return nil, ErrClosed
	}
	c := tls.Client(tc, u.tls)
	if err := c.HandshakeContext(ctx); err != nil {
		tc.Close()
		return nil, ctxErr(ctx, fmt.Errorf("TLS with %s: %w", u.tls.ServerName, err))
	}
	raw.SetDeadline(time.Time{}) // the Dialer leaves ctx's on it
	u.Dials.Add(1)
	return c, nil
}

// track registers c as t's, unless t is closed.
func (t *dohTransport) track(c *trackedConn) bool {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	if t.dead {
		return false
	}
	t.conns[c] = struct{}{}
	t.u.Conns.Add(1)
	return true
}

// close closes t's connections, idle or not, and any that comes up later.
func (t *dohTransport) close() {
	t.connMu.Lock()
	t.dead = true
	cs := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		cs = append(cs, c)
	}
	t.connMu.Unlock()
	t.rt.CloseIdleConnections()
	for _, c := range cs {
		c.Close()
	}
}

// trackedConn is a connection to the server, counted while open.
type trackedConn struct {
	net.Conn
	t    *dohTransport
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.t.connMu.Lock()
		delete(c.t.conns, c)
		c.t.connMu.Unlock()
		c.t.u.Conns.Add(-1)
	})
	return err
}

// dohBuf holds one query's buffers: the query as sent, the answer.
type dohBuf struct{ query, answer []byte }

var dohBufPool = sync.Pool{New: func() any {
	return &dohBuf{query: make([]byte, 0, 512), answer: make([]byte, 0, 2048)}
}}

// exchange asks q on t and finishes it.
func (u *HTTPS) exchange(t *dohTransport, q *Query) {
	defer u.release(t)
	b := dohBufPool.Get().(*dohBuf)
	ans, err := u.roundTrip(t, q, b)
	if err != nil {
		// The request's body may still be read (net/http closes it on a
		// goroutine of its own): b is left to the collector.
		q.Finish(nil, err)
		return
	}
	q.OverTCP = true
	q.Finish(ans, nil)
	if cap(b.answer) > maxPooledBuf {
		b.answer = make([]byte, 0, 2048)
	}
	dohBufPool.Put(b)
}

// roundTrip sends q's query on t and returns the answer, in b, with the
// client's ID.
func (u *HTTPS) roundTrip(t *dohTransport, q *Query, b *dohBuf) ([]byte, error) {
	if len(q.Msg) < dnsHeaderLen {
		return nil, errQueryFraming
	}
	b.query, _ = edns.AppendStreamQuery(b.query[:0], q.Msg, edns.StreamQuery{Block: edns.QueryPadBlock, NewOPT: true})
	b.query[0], b.query[1] = 0, 0
	ctx := q.Context()
	select {
	case t.slots <- struct{}{}:
	default:
		select {
		case t.slots <- struct{}{}:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, ErrOverload
			}
			return nil, ctx.Err()
		case <-u.ctx.Done():
			return nil, ErrClosed
		}
	}
	defer func() { <-t.slots }()
	post := u.post.Load()
	resp, err := t.rt.RoundTrip(u.request(ctx, b.query, post))
	if err != nil && ctx.Err() == nil && u.ctx.Err() == nil && !untrusted(err) {
		// The connection failed under the query (closed, reset, gone
		// silent), or could not be made: once more, on a new one.
		u.log.Debug("Asking again on a new connection", "server", u.url.Host, "err", err)
		resp, err = t.rt.RoundTrip(u.request(ctx, b.query, post))
	}
	if err == nil && !post && refusesGET(resp.StatusCode) {
		resp.Body.Close()
		if !u.post.Swap(true) {
			u.log.Warn("The DNS-over-HTTPS server refuses GET: asking with POST from now on",
				"server", u.url.Host, "status", resp.Status)
		}
		resp, err = t.rt.RoundTrip(u.request(ctx, b.query, true))
	}
	if err != nil {
		return nil, u.failure(ctx, err)
	}
	defer resp.Body.Close()
	now := time.Now()
	b.answer, err = readAnswer(b.answer[:0], resp, b.query, now)
	var se *HTTPStatusError
	switch {
	case err == nil:
	case errors.As(err, &se):
		if se.RetryAfter > 0 {
			u.held(t, se, now)
		}
		return nil, fmt.Errorf("%s: %w", u.url.Host, err)
	case errors.Is(err, ErrCorrupt):
		return nil, err
	default:
		return nil, u.failure(ctx, err)
	}
	copy(b.answer, q.Msg[:2])
	return b.answer, nil
}

// readAnswer appends to dst the DNS answer to query (as sent) that the
// server's response resp carries, at now, and returns the extended
// buffer. The response must have status 200, Content-Type
// application/dns-message and at most 65535 bytes of body, a DNS message
// answering query (checkAnswer); the answer loses its Padding options
// (edns.StripStreamOptions). The error is an *HTTPStatusError for another status (with
// the Retry-After of a 429 or 503), wraps ErrCorrupt for a bad answer, or
// is the error of reading the body.
func readAnswer(dst []byte, resp *http.Response, query []byte, now time.Time) ([]byte, error) {
	if resp.StatusCode != http.StatusOK {
		e := &HTTPStatusError{Code: resp.StatusCode}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
		}
		return dst, e
	}
	if ct := resp.Header.Get("Content-Type"); !isDNSMessage(ct) {
		return dst, fmt.Errorf("%w: content type %q, not %s", ErrCorrupt, ct, dohMediaType)
	}
	if resp.ContentLength > maxMsgLen {
		return dst, fmt.Errorf("%w: %d bytes, more than 65535", ErrCorrupt, resp.ContentLength)
	}
	start := len(dst)
	dst, err := readAtMost(dst, resp.Body, start+maxMsgLen+1)
	if err != nil {
		return dst[:start], fmt.Errorf("reading the answer: %w", err)
	}
	if len(dst)-start > maxMsgLen {
		return dst[:start], fmt.Errorf("%w: more than 65535 bytes", ErrCorrupt)
	}
	if _, err := checkAnswer(dst[start:], query); err != nil {
		return dst[:start], err
	}
	ans, _, _ := edns.StripStreamOptions(dst[start:])
	return dst[:start+len(ans)], nil
}

// untrusted reports whether err is the refusal of the server's
// certificate, which asking again would only repeat.
func untrusted(err error) bool {
	var ve *tls.CertificateVerificationError
	return errors.Is(err, ErrCertificate) || errors.As(err, &ve)
}

// request is the GET of query for ctx, or its POST if post.
func (u *HTTPS) request(ctx context.Context, query []byte, post bool) *http.Request {
	if !post {
		get := *u.url
		get.RawQuery = u.getQuery + base64.RawURLEncoding.EncodeToString(query)
		return (&http.Request{
			Method:     http.MethodGet,
			URL:        &get,
			Host:       u.url.Host,
			Header:     u.getHeader,
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
		}).WithContext(ctx)
	}
	return (&http.Request{
		Method:        http.MethodPost,
		URL:           u.url,
		Host:          u.url.Host,
		Header:        u.header,
		Body:          io.NopCloser(bytes.NewReader(query)),
		ContentLength: int64(len(query)),
		GetBody: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(query)), nil
		},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
	}).WithContext(ctx)
}

// refusesGET tells whether a response status says the server takes no GET
// for DNS queries (RFC 9110: 405 Method Not Allowed, 501 Not Implemented;
// 414 URI Too Long, for a long query).
func refusesGET(status int) bool {
	return status == http.StatusMethodNotAllowed || status == http.StatusRequestURITooLong ||
		status == http.StatusNotImplemented
}

// failure is the error of a failed exchange: the end of the query (its
// deadline, Cancel) or of the upstream (Close) if that caused err.
func (u *HTTPS) failure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if u.ctx.Err() != nil {
		return ErrClosed
	}
	return fmt.Errorf("%s: %w", u.url.Host, err)
}

// readAtMost appends to dst what r holds, until dst is max bytes long.
func readAtMost(dst []byte, r io.Reader, max int) ([]byte, error) {
	for len(dst) < max {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):min(cap(dst), max)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// isDNSMessage reports whether the Content-Type ct is application/dns-message
// (parameters aside).
func isDNSMessage(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), dohMediaType)
}

// retryAfter parses a Retry-After header (seconds, or an HTTP date) at now,
// bounded by maxRetryAfter; zero if there is none or it does not parse.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
