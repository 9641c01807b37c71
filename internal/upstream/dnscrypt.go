package upstream

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// certFetchTimeout bounds one certificate fetch attempt.
const certFetchTimeout = 10 * time.Second

// failuresBeforeRecheck consecutive failures make a DNSCrypt upstream check
// the certificates early: the resolver may have changed its key.
const failuresBeforeRecheck = 4

// sweepInterval is how often the UDP attempts that timed out are looked
// for; it bounds how late a timeout is noticed.
const sweepInterval = 50 * time.Millisecond

// Padding of UDP queries. The resolver never answers a UDP query with more
// bytes than the query had (spec section 9), so the padded length decides
// the largest answer that can come back over UDP: about paddedLen + 19
// bytes (68 bytes of query overhead against 48 of response overhead, and at
// least one byte of padding). Queries are padded to what the client can
// take, within an adaptive cap that starts at 512 (dnscrypt-proxy 1.x) and
// grows by 64 after each truncated answer (the spec's min-query-len rule).
const (
	initialUDPPad = 512
	maxUDPPad     = 4096
	padSlack      = dnscrypt.QueryOverhead - dnscrypt.ResponseOverhead - 1 // 19
)

// DNSCrypt is the upstream of a DNSCrypt v2 resolver. It owns the
// resolver's certificates (fetched, verified and refreshed through the
// Dialer), the UDP sockets and their queries in flight, the padding, and
// the retry over TCP of a truncated or lost UDP answer.
//
// A UDP query needs no goroutine of its own: Exchange seals and sends it,
// and the socket's reader that receives the answer opens it and calls
// Done. Only the exceptions (a truncated answer to ask again over TCP, a
// UDP timeout, a socket error) move to a goroutine. Over TCP (a TCP
// client, SOCKS, TCPOnly) each query has its own connection, as the
// protocol requires, and its own goroutine; at most Options.MaxConns at
// once.
type DNSCrypt struct {
	spec      Spec
	opts      Options
	log       *slog.Logger
	refresher *certs.Refresher
	ready     chan struct{}
	readyOnce sync.Once
	udpWait   time.Duration
	wantUDP   bool

	// mux is the UDP socket set, nil until made (see udpMux).
	mux      atomic.Pointer[udpMux]
	muxMu    sync.Mutex
	muxTried time.Time
	closed   bool

	tcpSlots chan struct{}
	// TCPConns counts the TCP connections open to the resolver (now and
	// the most at once).
	TCPConns Gauge

	udpPad   atomic.Int32
	failures atomic.Int32
}

var _ Upstream = (*DNSCrypt)(nil)

// NewDNSCrypt returns the DNSCrypt upstream of spec. New calls it, after
// checking spec; call New rather than this.
func NewDNSCrypt(spec Spec, opts Options) (*DNSCrypt, error) {
	opts.withDefaults()
	u := &DNSCrypt{
		spec:     spec,
		opts:     opts,
		log:      opts.Logger,
		ready:    make(chan struct{}),
		udpWait:  max(500*time.Millisecond, opts.Timeout/4),
		wantUDP:  !opts.Dialer.Proxied() && !opts.TCPOnly,
		tcpSlots: make(chan struct{}, opts.MaxConns),
	}
	u.udpPad.Store(initialUDPPad)
	interval := opts.CertRefresh
	if interval <= 0 {
		interval = certs.DefaultInterval
	}
	u.refresher = &certs.Refresher{
		Fetch:    u.FetchCerts,
		Now:      opts.Now,
		Interval: interval,
		Jitter:   interval / 36, // 100 s per hour, as 1.x
		Logger:   opts.Logger,
		OnChange: func(*certs.Cert) {
			u.readyOnce.Do(func() { close(u.ready) })
			// The network works: make the UDP sockets at the next query.
			u.muxMu.Lock()
			u.muxTried = time.Time{}
			u.muxMu.Unlock()
		},
	}
	return u, nil
}

func (u *DNSCrypt) String() string         { return u.spec.Addr }
func (u *DNSCrypt) Ready() <-chan struct{} { return u.ready }
func (u *DNSCrypt) Stream() bool           { return !u.wantUDP }
func (u *DNSCrypt) Cert() *certs.Cert      { return u.refresher.Current() }
func (u *DNSCrypt) PaddingCap() int        { return int(u.udpPad.Load()) }
func (u *DNSCrypt) UDPSockets() bool       { return u.mux.Load() != nil }
func (u *DNSCrypt) Refresh()               { u.log.Info("Refetching server certificates"); u.refresher.Trigger() }

// FetchCerts makes one attempt at fetching and verifying the resolver's
// certificates over the Dialer (UDP then TCP; TCP only with TCPOnly or
// through a proxy), and returns the valid ones, best first. With no valid
// certificate the error wraps certs.ErrNoValidCert; other errors are
// transport failures. It is what --test uses.
func (u *DNSCrypt) FetchCerts(ctx context.Context) ([]*certs.Cert, error) {
	ctx, cancel := context.WithTimeout(ctx, certFetchTimeout)
	defer cancel()
	return certs.Fetch(ctx, u.certExchanger(), u.spec.Addr, u.spec.ProviderName,
		u.spec.ProviderKey, u.opts.Now(), u.opts.IgnoreTimestamps)
}

// certExchanger is the transport of certificate queries, always through
// the Dialer: over TCP through a proxy (on a circuit of its own) or with
// TCPOnly, otherwise UDP with TCP on truncation and timeout.
func (u *DNSCrypt) certExchanger() certs.Exchanger {
	tcp := &certs.DialExchanger{Dialer: contextDialer{u.opts.Dialer, u.opts.CertCredentials()}, Timeout: certFetchTimeout}
	if !u.wantUDP {
		return tcp
	}
	tcp.Timeout = certFetchTimeout / 2
	return &certs.UDPWithTCPFallback{UDP: udpExchanger{u.opts.Dialer, 2 * time.Second}, TCP: tcp}
}

// contextDialer adapts an egress.Dialer with fixed credentials to the
// ContextDialer of certs.DialExchanger.
type contextDialer struct {
	d    egress.Dialer
	cred egress.Credentials
}

func (c contextDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" {
		return nil, fmt.Errorf("upstream: %s certificate exchange through a TCP dialer", network)
	}
	return c.d.DialTCP(ctx, addr, c.cred, nil)
}

// udpExchanger exchanges one message over a UDP socket of the Dialer.
type udpExchanger struct {
	d       egress.Dialer
	timeout time.Duration
}

func (x udpExchanger) ExchangeContext(ctx context.Context, m *dns.Msg, addr string) (*dns.Msg, time.Duration, error) {
	c, err := x.d.DialUDP(addr)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	cl := &dns.Client{Net: "udp", Timeout: x.timeout, UDPSize: dns.MaxMsgSize}
	return cl.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: c, UDPSize: dns.MaxMsgSize})
}

// Run refreshes the certificates and ends the UDP attempts that time out,
// until ctx is done.
func (u *DNSCrypt) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { u.refresher.Run(ctx) })
	wg.Go(func() { u.sweep(ctx) })
	u.udpMux() // at start, when the network may be up
	wg.Wait()
}

// Close closes the UDP sockets; queries waiting on them get ErrClosed.
func (u *DNSCrypt) Close() error {
	u.muxMu.Lock()
	u.closed = true
	m := u.mux.Swap(nil)
	u.muxMu.Unlock()
	if m != nil {
		m.close()
		for _, a := range m.claimAll(nil) {
			a.finish(nil, ErrClosed)
		}
	}
	return nil
}

// udpMux returns the UDP socket set, making it if there is none yet
// (connecting fails without a route, at boot before the network is up), at
// most once per second. It returns nil through a proxy, with TCPOnly, and
// while the sockets cannot be made: queries then go over TCP.
func (u *DNSCrypt) udpMux() *udpMux {
	if m := u.mux.Load(); m != nil || !u.wantUDP {
		return m
	}
	u.muxMu.Lock()
	defer u.muxMu.Unlock()
	if m := u.mux.Load(); m != nil || u.closed || time.Since(u.muxTried) < time.Second {
		return m
	}
	u.muxTried = time.Now()
	m, err := newUDPMux(u, min(runtime.GOMAXPROCS(0), 4))
	if err != nil {
		u.log.Debug("Unable to open the upstream UDP sockets", "err", err)
		return nil
	}
	u.mux.Store(m)
	return m
}

// attempt is a DNSCrypt upstream's state of one Query: its key and nonce,
// its buffers. Attempts are recycled through a pool.
//
// A UDP attempt waits in the mux's pending map in state stateWaiting, with
// no goroutine; whoever moves it to stateOwned with a compare-and-swap (the
// reader with the answer, the sweeper at its deadline, Cancel through
// CancelQuery, a socket error) finishes it. Every such claim happens under
// the mux lock while the attempt is still pending, so a recycled attempt
// can never be claimed for its previous life.
type attempt struct {
	state atomic.Int32
	// refs: the attempt's life (until finish), and a sender still using
	// its packet (see sendUDP); it goes back to the pool at zero.
	refs atomic.Int32
	u    *DNSCrypt
	q    *Query
	key  *dnscrypt.SharedKey

	// The UDP query in flight: its nonce opens the answer; udpDeadline
	// ends the UDP attempt; padded is the padded length it was sent with;
	// sock is the socket it was sent on.
	nonce       [dnscrypt.HalfNonceSize]byte
	padded      int
	udpDeadline time.Time
	sock        int
	// noQueue: a TCP retry after the UDP attempt was lost; it takes a
	// connection slot only if one is free (under overload, a backlog of
	// such retries would hold up the TCP clients).
	noQueue bool

	// Buffers: the sealed UDP packet, the query re-prepared for the TCP
	// retry, the sealed TCP packet with its length prefix, the encrypted
	// response and the decrypted answer.
	pkt, retry, tpkt, resp, ans []byte
}

// Attempt states.
const (
	stateOwned   = iota // a goroutine works on it (the zero value)
	stateWaiting        // waiting for its UDP answer
)

var attemptPool = sync.Pool{New: func() any {
	return &attempt{
		pkt:  make([]byte, 0, 2048),
		tpkt: make([]byte, 0, 2048),
		resp: make([]byte, 0, 2048),
		ans:  make([]byte, 0, 2048),
	}
}}

// maxPooledBuf keeps the pool from holding on to the rare huge buffers.
const maxPooledBuf = 8192

func putAttempt(a *attempt) {
	a.u, a.q, a.key, a.noQueue = nil, nil, nil, false
	a.state.Store(stateOwned)
	for _, b := range []*[]byte{&a.pkt, &a.retry, &a.tpkt, &a.resp, &a.ans} {
		if cap(*b) > maxPooledBuf {
			*b = make([]byte, 0, 2048)
		}
		*b = (*b)[:0]
	}
	attemptPool.Put(a)
}

// finish gives a's outcome to its query and recycles a (once its sender,
// if any, is done with it). answer may be a's own buffer: it is valid
// during Receive only.
func (a *attempt) finish(answer []byte, err error) {
	a.q.Finish(answer, err)
	a.release()
}

// release drops a reference to a; the last one recycles it.
func (a *attempt) release() {
	if a.refs.Add(-1) == 0 {
		putAttempt(a)
	}
}

// Claim implements Canceller: a query waiting for its UDP answer is
// claimed; elsewhere the goroutine working on it sees its context end. It
// runs with q's lock held, while q is not finished: a is q's.
func (a *attempt) Claim(*Query) bool {
	m := a.u.mux.Load()
	return m != nil && m.claim(a)
}

// Abandon implements Canceller.
func (a *attempt) Abandon(*Query) { a.finish(nil, context.Canceled) }

// Exchange implements Upstream.
func (u *DNSCrypt) Exchange(q *Query) {
	cert := u.refresher.Current()
	if cert == nil {
		u.refresher.Trigger() // a client is waiting: try again soon
		q.Finish(nil, ErrNoCert)
		return
	}
	k, err := q.Identity.SharedKey(cert)
	if err != nil {
		q.Finish(nil, fmt.Errorf("certificate %s: %w", cert.SerialString(), err))
		return
	}
	a := attemptPool.Get().(*attempt)
	a.refs.Store(1)
	a.u, a.q, a.key = u, q, k
	if !q.TCP {
		if m := u.udpMux(); m != nil && u.sendUDP(m, a) {
			return
		}
	}
	go a.exchangeTCP()
}

// sendUDP seals a's query and sends it on the fast path. It returns false
// if a could not be sealed: the caller then goes over TCP.
func (u *DNSCrypt) sendUDP(m *udpMux, a *attempt) bool {
	q := a.q
	a.padded = u.udpPadding(q)
	rand.Read(a.nonce[:])
	var err error
	if a.pkt, err = dnscrypt.SealQuery(a.pkt[:0], q.Msg, a.key, &a.nonce, a.padded); err != nil {
		return false
	}
	a.udpDeadline = time.Now().Add(u.udpWait)
	if !q.SetCanceller(a) {
		a.finish(nil, context.Canceled)
		return true
	}
	// Once registered, a may be claimed and finished by another goroutine
	// (an answer, an ICMP error, a cancel) while this one still writes its
	// packet and looks at it: hold a reference until done.
	a.refs.Add(1)
	defer a.release()
	switch err := m.send(a); {
	case err == nil:
		// Canceled while being sent: claim it back, unless the answer
		// came first.
		if q.Canceled() && m.claim(a) {
			a.finish(nil, context.Canceled)
		}
	case errors.Is(err, errClaimed):
		// The claimer finishes it.
	default:
		a.noQueue = true
		go a.retryTCP(fmt.Errorf("sending over UDP: %w", err))
	}
	return true
}

// deliver completes a, which the mux's reader claimed, with the resolver's
// response resp; rb is the reader's scratch space.
func (u *DNSCrypt) deliver(m *udpMux, a *attempt, resp []byte, rb *readerBuf) {
	ans, err := dnscrypt.OpenResponse(rb.ans[:0], resp, a.key, &a.nonce)
	if err != nil {
		// A forged or corrupted datagram must not end the query: wait for
		// another one until the UDP deadline.
		u.failed(fmt.Errorf("%w: %w", ErrCorrupt, err))
		if a.q.Canceled() {
			a.finish(nil, context.Canceled)
			return
		}
		m.wait(a)
		return
	}
	u.succeeded()
	if truncated(ans) {
		u.growUDPPad(a.padded)
		if !u.udpWasEnough(a) {
			go a.retryTCP(nil)
			return
		}
	}
	a.finish(ans, nil)
}

// udpFailed takes the attempts whose UDP exchange failed (a timeout, an
// ICMP error on their socket): each goes on over TCP within its deadline,
// or ends at once if it was canceled meanwhile.
func (u *DNSCrypt) udpFailed(as []*attempt, err error) {
	for _, a := range as {
		if a.q.Canceled() {
			a.finish(nil, context.Canceled)
			continue
		}
		u.failed(err)
		a.noQueue = true
		go a.retryTCP(err)
	}
}

// sweep ends the UDP attempts that ran out of time: they go on over TCP.
func (u *DNSCrypt) sweep(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	var batch []*attempt
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if m := u.mux.Load(); m != nil {
				batch = m.expired(now, batch[:0])
				u.udpFailed(batch, ErrUDPTimeout)
				clear(batch)
			}
		}
	}
}

// retryTCP asks a's query again over TCP, with the same key, after a
// truncated answer (why is nil), a UDP timeout or a send error. The UDP
// query advertised the configured size: over TCP it advertises what the
// client can take, if that is more.
func (a *attempt) retryTCP(why error) {
	q := a.q
	if size := a.u.opts.EDNSPayloadSize; size > edns.MinUDPSize && q.Limit > size {
		if m, _, err := edns.PrepareQuery(a.retry[:0], q.Msg, uint16(min(q.Limit, edns.MaxTCPSize))); err == nil {
			a.retry = m
		}
	}
	a.exchangeTCP()
}

// exchangeTCP sends a's query over a new TCP connection and finishes a.
func (a *attempt) exchangeTCP() {
	u, q := a.u, a.q
	msg := q.Msg
	if len(a.retry) > 0 {
		msg = a.retry
	}
	var rnd [dnscrypt.HalfNonceSize + 1]byte
	rand.Read(rnd[:])
	nonce := [dnscrypt.HalfNonceSize]byte(rnd[:])
	padded := dnscrypt.TCPPaddedLen(len(msg), rnd[dnscrypt.HalfNonceSize])
	pkt, err := dnscrypt.SealQuery(append(a.tpkt[:0], 0, 0), msg, a.key, &nonce, padded)
	if err != nil {
		a.finish(nil, err)
		return
	}
	a.tpkt = pkt
	binary.BigEndian.PutUint16(pkt, uint16(len(pkt)-2))
	ctx := q.Context()
	if err := u.tcpExchange(ctx, a, pkt); err != nil {
		u.failed(err)
		a.finish(nil, err)
		return
	}
	a.ans, err = dnscrypt.OpenResponse(a.ans[:0], a.resp, a.key, &nonce)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
		u.failed(err)
		a.finish(nil, err)
		return
	}
	u.succeeded()
	q.OverTCP = true
	a.finish(a.ans, nil)
}

// tcpExchange sends the framed packet (2-byte length, then the encrypted
// query) on a new connection of the Dialer with the query's credentials,
// and reads one framed response into a.resp. DNSCrypt allows one
// transaction per connection.
func (u *DNSCrypt) tcpExchange(ctx context.Context, a *attempt, framed []byte) error {
	if err := u.takeSlot(ctx, !a.noQueue); err != nil {
		return err
	}
	defer u.releaseSlot()
	c, err := u.opts.Dialer.DialTCP(ctx, u.spec.Addr, a.q.Identity.Credentials, framed)
	if err != nil {
		return ctxErr(ctx, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return ctxErr(ctx, fmt.Errorf("reading response length: %w", err))
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if cap(a.resp) < n {
		a.resp = make([]byte, n)
	}
	a.resp = a.resp[:n]
	if _, err := io.ReadFull(c, a.resp); err != nil {
		return ctxErr(ctx, fmt.Errorf("reading response: %w", err))
	}
	return nil
}

// takeSlot takes one of the TCP connection slots: at once if one is free,
// or else, if wait, the first one freed before ctx ends.
func (u *DNSCrypt) takeSlot(ctx context.Context, wait bool) error {
	select {
	case u.tcpSlots <- struct{}{}:
	default:
		if !wait {
			return ErrOverload
		}
		select {
		case u.tcpSlots <- struct{}{}:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ErrOverload
			}
			return ctx.Err()
		}
	}
	u.TCPConns.Add(1)
	return nil
}

func (u *DNSCrypt) releaseSlot() {
	u.TCPConns.Add(-1)
	<-u.tcpSlots
}

// ctxErr prefers the end of ctx over the I/O error it provoked.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// upstreamLimit is the largest answer the resolver may send over UDP given
// the OPT record of the query sent.
func (u *DNSCrypt) upstreamLimit(q *Query) int {
	if u.opts.EDNSPayloadSize > edns.MinUDPSize {
		return u.opts.EDNSPayloadSize
	}
	return min(q.Limit, maxUDPPad) // the client's own OPT, or 512
}

// udpPadding returns the padded length of q over UDP: enough for an answer
// as large as the client accepts, within the adaptive cap.
func (u *DNSCrypt) udpPadding(q *Query) int {
	want := min(q.Limit, u.upstreamLimit(q))
	need := dnscrypt.UDPPaddedLen(0, want-padSlack)
	return dnscrypt.UDPPaddedLen(len(q.Msg), min(need, int(u.udpPad.Load())))
}

// udpWasEnough reports, for a truncated UDP answer to a, whether UDP could
// already bring all the client can take: the client then gets the
// truncated answer and asks over TCP itself. Otherwise the upstream asks
// over TCP now.
func (u *DNSCrypt) udpWasEnough(a *attempt) bool {
	return min(a.padded+padSlack, u.upstreamLimit(a.q)) >= a.q.Limit
}

func (u *DNSCrypt) growUDPPad(used int) {
	for {
		cur := u.udpPad.Load()
		next := min(int32(used+dnscrypt.BlockSize), maxUDPPad)
		if next <= cur || u.udpPad.CompareAndSwap(cur, next) {
			return
		}
	}
}

func truncated(msg []byte) bool { return len(msg) > 2 && msg[2]&0x02 != 0 }

// failed counts a failure; a run of them triggers an early certificate
// check. Failures caused by the query's own end do not count.
func (u *DNSCrypt) failed(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if u.failures.Add(1) == failuresBeforeRecheck {
		u.log.Warn("Repeated upstream failures - checking the server certificates", "err", err)
		u.refresher.Trigger()
	}
}

func (u *DNSCrypt) succeeded() {
	if u.failures.Load() != 0 {
		u.failures.Store(0)
	}
}

// Gauge counts something in use, and the most that was in use at once.
type Gauge struct{ now, peak atomic.Int64 }

// Add changes the count by d.
func (g *Gauge) Add(d int64) {
	n := g.now.Add(d)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
}

// Now returns the count; Peak the most it was.
func (g *Gauge) Now() int64  { return g.now.Load() }
func (g *Gauge) Peak() int64 { return g.peak.Load() }
