package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/names"
)

// certFetchTimeout bounds one certificate fetch attempt.
const certFetchTimeout = 10 * time.Second

// readyGrace is how long Serve waits for the first certificate before it
// reports itself ready anyway (see Serve).
const readyGrace = 3 * time.Second

// Proxy forwards plain DNS queries to a DNSCrypt resolver. Make one with
// New; it serves one Serve call at a time.
type Proxy struct {
	cfg Config
	log *slog.Logger

	ids       *identities
	refresher *certs.Refresher
	socks     *socksDialer // nil: direct
	direct    net.Dialer
	udpWait   time.Duration

	// tcpSlots bounds the TCP connections open to the resolver at once;
	// upstreamTCP counts them.
	tcpSlots    chan struct{}
	upstreamTCP gauge
	names       *names.Policy
	cookies     *edns.Cookies
	failLog     failureLog

	// Per Serve. udp is the upstream UDP mux, nil with SOCKS or TCPOnly,
	// and until the sockets could be made (see mux).
	udp      atomic.Pointer[udpMux]
	wantUDP  bool
	muxMu    sync.Mutex
	muxTried time.Time
	muxDone  bool // Serve is ending: make no more
	active   activeSet
	wg       sync.WaitGroup

	firstCert chan struct{} // closed when the first certificate is in
	udpPad    atomic.Int32
	failures  atomic.Int32
	evictions atomic.Int64 // stale requests dropped for newer ones
	sheds     atomic.Int64 // new requests refused, the set full of fresh ones
	rtt       atomic.Int64 // moving average of answered requests' times, ns
	conns     connSet
	serving   atomic.Bool
}

// New validates cfg and returns a Proxy. It does no I/O.
func New(cfg Config) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	kp := cfg.ClientKey
	if kp == nil {
		if kp, err = dnscrypt.GenerateKeyPair(rand.Reader); err != nil {
			return nil, fmt.Errorf("proxy: generating the client key pair: %w", err)
		}
	}
	policy, err := cfg.namesPolicy()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	var secret [16]byte
	rand.Read(secret[:])
	p := &Proxy{
		names:    policy,
		cookies:  edns.NewCookies(secret),
		cfg:      cfg,
		log:      cfg.Logger,
		ids:      newIdentities(&cfg, kp),
		udpWait:  max(500*time.Millisecond, cfg.Timeout/4),
		tcpSlots: make(chan struct{}, maxUpstreamTCP(cfg.MaxActiveRequests)),
		failLog:  failureLog{log: cfg.Logger, window: failureWindow},
		wantUDP:  cfg.SOCKS == nil && !cfg.TCPOnly,
	}
	if s := cfg.SOCKS; s != nil {
		p.socks = newSOCKSDialer(s, cfg.Logger)
	}
	p.conns.max = max(cfg.MaxActiveRequests, 16)
	p.udpPad.Store(initialUDPPad)
	p.firstCert = make(chan struct{})
	var once sync.Once
	p.refresher = &certs.Refresher{
		Fetch:    p.fetchCerts,
		Now:      cfg.Now,
		Interval: cfg.CertRefresh,
		Jitter:   cfg.CertRefresh / 36, // 100 s per hour, as 1.x
		Logger:   cfg.Logger,
		OnChange: func(*certs.Cert) {
			once.Do(func() { close(p.firstCert) })
			// The network works: make the UDP sockets at the next query.
			p.muxMu.Lock()
			p.muxTried = time.Time{}
			p.muxMu.Unlock()
		},
	}
	return p, nil
}

// Config returns the configuration with defaults filled in.
func (p *Proxy) Config() Config { return p.cfg }

// FetchCerts makes one attempt at fetching and verifying the resolver's
// certificates over the configured transport (UDP then TCP; TCP only with
// TCPOnly; through SOCKS with SOCKS), and returns the valid ones, best
// first. With no valid certificate the error wraps certs.ErrNoValidCert;
// other errors are transport failures. It is what --test uses.
func (p *Proxy) FetchCerts(ctx context.Context) ([]*certs.Cert, error) {
	return p.fetchCerts(ctx)
}

func (p *Proxy) fetchCerts(ctx context.Context) ([]*certs.Cert, error) {
	ctx, cancel := context.WithTimeout(ctx, certFetchTimeout)
	defer cancel()
	return certs.Fetch(ctx, p.certExchanger(), p.cfg.ResolverAddr, p.cfg.ProviderName,
		p.cfg.ProviderKey, p.cfg.Now(), p.cfg.IgnoreTimestamps)
}

// certExchanger is the transport of certificate queries: through SOCKS
// over TCP (never anything else), TCP only, or UDP with TCP on truncation
// and timeout.
func (p *Proxy) certExchanger() certs.Exchanger {
	if p.socks != nil {
		user, pass := p.ids.certCredentials()
		return &certs.DialExchanger{Dialer: socksContextDialer{p.socks, user, pass}, Timeout: certFetchTimeout}
	}
	tcp := &dns.Client{Net: "tcp", Timeout: certFetchTimeout / 2}
	if p.cfg.TCPOnly {
		return tcp
	}
	return &certs.UDPWithTCPFallback{UDP: &dns.Client{Net: "udp", Timeout: 2 * time.Second}, TCP: tcp}
}

// socksContextDialer adapts socksDialer to proxy.ContextDialer for the
// certificate exchanges: the connection starts empty, so there is no data
// to send optimistically and the CONNECT reply is awaited.
type socksContextDialer struct {
	d          *socksDialer
	user, pass string
}

func (s socksContextDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" {
		return nil, fmt.Errorf("%w: only TCP goes through SOCKS, not %s", errSOCKS, network)
	}
	return s.d.dial(ctx, addr, s.user, s.pass, nil)
}

// RefreshCerts asks for an early certificate check (SIGUSR1), without
// waiting for it. The certificate in use stays until a better one is found.
func (p *Proxy) RefreshCerts() {
	p.log.Info("Refetching server certificates")
	p.refresher.Trigger()
}

// Serve answers queries arriving on pc (UDP) and ln (TCP) until ctx is
// done; either may be nil. It closes pc and ln, and returns nil after a
// shutdown through ctx, once every goroutine it started has ended.
//
// It answers at once, directly as through SOCKS: SERVFAIL while it has no
// valid certificate (the network or Tor may not be up yet at boot, the
// resolver may be down, the certificate in use may have expired), so that
// clients hear why rather than time out; each such query hurries the next
// certificate attempt.
//
// Config.OnReady is called, and "Proxying from ..." logged, once the
// first certificate is in, or readyGrace after the listeners started
// answering without one (a resolver or a network that is down at boot must
// not hold up a boot script, a --daemonize parent or systemd): the log line
// then says that clients get SERVFAIL until the certificate arrives.
func (p *Proxy) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	if !p.serving.CompareAndSwap(false, true) {
		return errors.New("proxy: Serve called twice")
	}
	defer p.serving.Store(false)
	p.active = activeSet{max: p.cfg.MaxActiveRequests}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	closeListeners := func() {
		if pc != nil {
			pc.Close()
		}
		if ln != nil {
			ln.Close()
		}
	}

	p.muxMu.Lock()
	p.muxDone, p.muxTried = false, time.Time{}
	p.muxMu.Unlock()
	p.mux()
	defer p.closeMux()

	var background sync.WaitGroup
	background.Go(func() { p.refresher.Run(ctx) })
	background.Go(func() { p.sweep(ctx) })

	if pc != nil {
		p.wg.Add(1)
		go p.serveUDP(ctx, pc)
	}
	if ln != nil {
		p.wg.Add(1)
		go p.serveTCP(ctx, ln)
	}
	grace := time.NewTimer(readyGrace)
	select {
	case <-p.firstCert:
	case <-grace.C:
	case <-ctx.Done():
	}
	grace.Stop()
	if ctx.Err() == nil {
		msg := fmt.Sprintf("Proxying from %s to %s", listenAddr(pc, ln), p.upstreamName())
		if p.refresher.Current() == nil {
			msg += " (SERVFAIL until the resolver's certificate arrives)"
		}
		p.log.Log(ctx, LevelNotice, msg)
		if p.cfg.OnReady != nil {
			p.cfg.OnReady()
		}
	}

	<-ctx.Done()
	p.log.Log(context.Background(), LevelNotice, "Stopping proxy")
	closeListeners()
	p.closeActive()
	p.wg.Wait()
	background.Wait()
	if pc != nil {
		p.log.Info("UDP listener shut down")
	}
	if ln != nil {
		p.log.Info("TCP listener shut down")
	}
	return nil
}

// mux returns the upstream UDP mux, making its sockets if there are none
// yet (connecting them fails without a route, at boot before the network
// is up), at most once per second. It returns nil through SOCKS, with
// TCPOnly, and while the sockets cannot be made: the request then goes
// over TCP, or gets SERVFAIL.
func (p *Proxy) mux() *udpMux {
	if m := p.udp.Load(); m != nil || !p.wantUDP {
		return m
	}
	p.muxMu.Lock()
	defer p.muxMu.Unlock()
	if m := p.udp.Load(); m != nil || p.muxDone || time.Since(p.muxTried) < time.Second {
		return m
	}
	p.muxTried = time.Now()
	m, err := newUDPMux(p.cfg.ResolverAddr, min(runtime.GOMAXPROCS(0), 4), p.deliverUDP, p.udpFailed)
	if err != nil {
		p.upstreamFailed(fmt.Errorf("opening the upstream UDP sockets: %w", err))
		return nil
	}
	p.udp.Store(m)
	return m
}

// closeMux closes the upstream UDP mux at the end of Serve.
func (p *Proxy) closeMux() {
	p.muxMu.Lock()
	p.muxDone = true
	m := p.udp.Swap(nil)
	p.muxMu.Unlock()
	if m != nil {
		m.close()
	}
}

func (p *Proxy) upstreamName() string {
	if s := p.cfg.SOCKS; s != nil {
		return p.cfg.ResolverAddr + " through SOCKS5 proxy " + s.Addr
	}
	return p.cfg.ResolverAddr
}

func listenAddr(pc net.PacketConn, ln net.Listener) string {
	switch {
	case pc != nil:
		return pc.LocalAddr().String()
	case ln != nil:
		return ln.Addr().String()
	}
	return "nowhere"
}
