package proxy

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/names"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/resolverset"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// readyGrace is how long Serve waits for the upstream to be ready (its
// first certificate) before it reports itself ready anyway (see Serve).
const readyGrace = 3 * time.Second

// housekeepingInterval is how often the log windows of failures are looked
// at (see failureLog.flush).
const housekeepingInterval = time.Second

// Proxy answers plain DNS queries with the answers of an upstream
// resolver. Make one with New; it serves one Serve call.
type Proxy struct {
	cfg Config
	log *slog.Logger

	ids     *identities
	dialer  egress.Dialer
	up      upstream.Upstream
	set     *resolverset.Set // up, when it is a set
	names   *names.Policy
	cookies *edns.Cookies
	udpWait time.Duration
	failLog failureLog

	// Per Serve.
	active activeSet
	wg     sync.WaitGroup
	conns  connSet

	evictions atomic.Int64 // stale requests dropped for newer ones
	sheds     atomic.Int64 // new requests refused, the set full of fresh ones
	rtt       atomic.Int64 // moving average of answered requests' times, ns
	served    atomic.Bool
}

// New validates cfg and returns a Proxy. It does no I/O.
func New(cfg Config) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	policy, err := cfg.namesPolicy()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	var secret [16]byte
	rand.Read(secret[:])
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		ids:     newIdentities(&cfg),
		names:   policy,
		cookies: edns.NewCookies(secret),
		udpWait: max(500*time.Millisecond, cfg.Timeout/4),
		failLog: failureLog{log: cfg.Logger, window: failureWindow},
		dialer:  egress.Direct(),
	}
	if s := cfg.SOCKS; s != nil {
		p.dialer = egress.SOCKS5(egress.SOCKSConfig{Addr: s.Addr, OptimisticData: s.OptimisticData,
			Isolation: s.Isolation != IsolationNone, Account: s.User != "" || s.Password != "", Logger: cfg.Logger})
	}
	if p.up, err = p.upstreams(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.conns.max = max(cfg.MaxActiveRequests, 16)
	return p, nil
}

// upstreams makes the upstream of each resolver; several make a
// resolverset.Set, and so does one with hedging asked for.
func (p *Proxy) upstreams() (upstream.Upstream, error) {
	cfg := &p.cfg
	opts := upstream.Options{
		Dialer:           p.dialer,
		Timeout:          cfg.Timeout,
		MaxConns:         maxUpstreamTCP(cfg.MaxActiveRequests),
		EDNSPayloadSize:  cfg.EDNSPayloadSize,
		TCPOnly:          cfg.TCPOnly,
		CertRefresh:      cfg.CertRefresh,
		IgnoreTimestamps: cfg.IgnoreTimestamps,
		CertCredentials:  p.ids.certCredentials,
		Now:              cfg.Now,
		Logger:           cfg.Logger,
	}
	var members []resolverset.Member
	for i, spec := range cfg.Resolvers {
		if len(cfg.Resolvers) > 1 && cfg.Logger != nil {
			// Each resolver's own lines (certificates, connections) say
			// which it is.
			opts.Logger = cfg.Logger.With("resolver", spec.String())
		}
		up, err := upstream.New(spec, opts)
		if err != nil {
			return nil, err
		}
		op := ""
		if i < len(cfg.Operators) {
			op = cfg.Operators[i]
		}
		if op == "" {
			op = resolverset.Operator("", cmp.Or(spec.ProviderName, spec.ServerName), spec.Addr)
		}
		members = append(members, resolverset.Member{Upstream: up, Name: spec.String(), Operator: op})
	}
	proxied := cfg.SOCKS != nil
	hedge := cfg.Hedge.on(len(members) > 1)
	if len(members) == 1 && !hedge {
		return members[0].Upstream, nil
	}
	sel := resolverset.Fastest
	if cfg.Selection == SelectRotate || cfg.Selection == SelectAuto && proxied {
		sel = resolverset.Rotate
	}
	var fresh func() *upstream.Identity
	rotateEvery := DefaultIsolationEpoch
	if proxied {
		fresh = p.ids.fresh
		rotateEvery = cmp.Or(cfg.SOCKS.Epoch, DefaultIsolationEpoch)
	}
	set, err := resolverset.New(members, resolverset.Options{
		Selection:     sel,
		RotateEvery:   rotateEvery,
		Hedge:         hedge,
		HedgeOther:    cfg.HedgeOther.on(!proxied),
		Timeout:       cfg.Timeout,
		FreshIdentity: fresh,
		Now:           cfg.Now,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	p.set = set
	return set, nil
}

// Status logs one line per resolver of a set (SIGUSR1): its state,
// queries, failures and median answer time. With one resolver it logs
// nothing.
func (p *Proxy) Status() {
	if p.set == nil {
		return
	}
	p.log.Info(fmt.Sprintf("Resolvers: %d (%s selection)", len(p.cfg.Resolvers), p.set.Selection()))
	for _, st := range p.set.Status() {
		rtt := "-"
		if st.MedianRTT > 0 {
			rtt = st.MedianRTT.Round(100 * time.Microsecond).String()
		}
		args := []any{"state", st.State, "queries", st.Queries, "failures", st.Failures, "median_rtt", rtt, "operator", st.Operator}
		if st.LastError != nil {
			args = append(args, "last_error", st.LastError)
		}
		p.log.Info("Resolver "+st.Name, args...)
	}
}

// maxUpstreamTCP is how many TCP connections to the resolver may be open
// at once for a request cap of n: a small fixed share of it.
func maxUpstreamTCP(n int) int { return max(4, min(64, n/8)) }

// Config returns the configuration with defaults filled in.
func (p *Proxy) Config() Config { return p.cfg }

// FetchCerts makes one attempt at fetching and verifying the DNSCrypt
// resolver's certificates over the configured route (UDP then TCP; TCP
// only with TCPOnly; through SOCKS with SOCKS), and returns the valid ones,
// best first. With no valid certificate the error wraps
// certs.ErrNoValidCert; other errors are transport failures. It is what
// --test uses.
func (p *Proxy) FetchCerts(ctx context.Context) ([]*certs.Cert, error) {
	dc, ok := p.up.(*upstream.DNSCrypt)
	if !ok {
		return nil, fmt.Errorf("proxy: %s is not a DNSCrypt resolver: it has no certificates", p.up)
	}
	return dc.FetchCerts(ctx)
}

// RefreshCerts asks for an early check of the certificates (SIGUSR1),
// without waiting for it. The certificate in use stays until a better one
// is found.
func (p *Proxy) RefreshCerts() { p.up.Refresh() }

// Serve answers queries arriving on pc (UDP) and ln (TCP) until ctx is
// done; either may be nil. It closes pc and ln, and returns nil after a
// shutdown through ctx, once every goroutine it started has ended.
//
// It answers at once, directly as through SOCKS: SERVFAIL while the
// upstream cannot carry queries (a DNSCrypt resolver's certificate not
// fetched yet: the network or Tor may not be up yet at boot, the resolver
// may be down, the certificate in use may have expired), so that clients
// hear why rather than time out; each such query hurries the next
// certificate attempt.
//
// Config.OnReady is called, and "Proxying from ..." logged, once the
// upstream is ready, or readyGrace after the listeners started answering
// without it (a resolver or a network that is down at boot must not hold
// up a boot script, a --daemonize parent or systemd): the log line then
// says that clients get SERVFAIL until the certificate arrives.
func (p *Proxy) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	if !p.served.CompareAndSwap(false, true) {
		return errors.New("proxy: Serve called twice")
	}
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

	var background sync.WaitGroup
	background.Go(func() { p.up.Run(ctx) })
	background.Go(func() { p.housekeeping(ctx) })

	if pc != nil {
		p.wg.Add(1)
		go p.serveUDP(ctx, pc)
	}
	if ln != nil {
		p.wg.Add(1)
		go p.serveTCP(ctx, ln)
	}
	grace := time.NewTimer(readyGrace)
	ready := true
	select {
	case <-p.up.Ready():
	case <-grace.C:
		ready = false
	case <-ctx.Done():
	}
	grace.Stop()
	if ctx.Err() == nil {
		msg := fmt.Sprintf("Proxying from %s to %s", listenAddr(pc, ln), p.upstreamName())
		if !ready {
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
	p.up.Close()
	if pc != nil {
		p.log.Info("UDP listener shut down")
	}
	if ln != nil {
		p.log.Info("TCP listener shut down")
	}
	return nil
}

// housekeeping writes the failure counts of the log windows that ended,
// until ctx is done.
func (p *Proxy) housekeeping(ctx context.Context) {
	t := time.NewTicker(housekeepingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.failLog.flush(now)
		}
	}
}

func (p *Proxy) upstreamName() string {
	if p.dialer.Proxied() {
		return p.up.String() + " " + p.dialer.String()
	}
	return p.up.String()
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
