package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// Defaults of the [Refresher] fields.
const (
	DefaultInterval   = time.Hour         // the protocol asks clients to re-check hourly
	DefaultJitter     = 100 * time.Second // dnscrypt-proxy 1.x: 0..99 s
	DefaultMinBackoff = time.Second       // first retry after a failure
	DefaultMaxBackoff = 300 * time.Second // longest wait between retries
)

// longRotation is the validity above which dnscrypt-proxy 1.x notes that
// the key rotation period is too long for forward secrecy.
const longRotation = 24 * time.Hour

var errNoFetch = errors.New("certs: Refresher.Fetch is nil")

// Refresher owns the certificate in use for one resolver and keeps it
// fresh. Set the fields, call Init to wait for the first certificate, then
// run Run in a goroutine; Current and Trigger are safe for concurrent use.
//
// Refreshing: after a successful fetch the next one comes Interval plus a
// random part of Jitter later, or just after the current certificate
// expires if that is sooner. After a failure it retries with exponential
// backoff: MinBackoff, twice that, and so on up to MaxBackoff; a success
// resets it. (dnscrypt-proxy 1.x grew linearly over 100 steps from 1 s to
// 300 s; doubling reaches the same cap after 9 failures.)
//
// Switching: the best fetched certificate (see [Best]) replaces the current
// one when there is none yet, when it is better (higher serial, or the same
// serial and a higher es-version), when the current certificate has
// expired, or when the resolver no longer advertises the current
// certificate. Otherwise the current one stays, so clients keep using a key
// the resolver still accepts. A failed fetch keeps the current certificate.
type Refresher struct {
	// Fetch makes one attempt and returns the valid certificates, best
	// first (for example a closure around [Fetch]). Required. It must
	// honour ctx and bound its own duration (the Exchanger's timeouts).
	Fetch func(ctx context.Context) ([]*Cert, error)
	// Now tells the time for validity checks; nil means time.Now. Waiting
	// uses real timers.
	Now func() time.Time
	// Interval between successful refreshes; zero means DefaultInterval.
	Interval time.Duration
	// Jitter is the upper bound of a uniformly random delay added to
	// Interval; zero means DefaultJitter.
	Jitter time.Duration
	// MinBackoff and MaxBackoff bound the wait after failed fetches; zero
	// means DefaultMinBackoff and DefaultMaxBackoff. MinBackoff is also the
	// shortest time between two fetches caused by Trigger.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives dnscrypt-proxy 1.x style messages; nil discards them.
	Logger *slog.Logger
	// OnChange, if set, is called after the current certificate changed,
	// synchronously from Init or Run, with c == Current(). Calls are
	// serialised. It must not call Init or Run.
	OnChange func(c *Cert)

	cur atomic.Pointer[Cert]

	triggerOnce sync.Once
	trigger     chan struct{}

	mu            sync.Mutex // serialises apply and expiry notes
	expiredLogged *Cert      // the current cert whose expiry was logged
}

// Current returns the certificate to use now: nil before the first
// successful fetch, and nil once the certificate in use has expired by the
// Refresher's clock (the protocol's rule: valid until ts-end inclusive, with
// no margin) until a valid one replaces it. It never blocks.
func (r *Refresher) Current() *Cert {
	c := r.cur.Load()
	if c == nil || expired(c, r.now()) {
		return nil
	}
	return c
}

// Trigger asks Run for an early refresh, for example after repeated
// decryption failures or timeouts that suggest the resolver changed its
// key. It never blocks, and triggers coalesce: Run fetches once, no sooner
// than MinBackoff after its previous fetch. While Run is backing off after
// failures with a certificate in hand, the retry already scheduled serves
// the request; without any certificate yet, Trigger cuts the backoff short
// (clients are waiting).
func (r *Refresher) Trigger() {
	select {
	case r.triggerC() <- struct{}{}:
	default:
	}
}

func (r *Refresher) triggerC() chan struct{} {
	r.triggerOnce.Do(func() { r.trigger = make(chan struct{}, 1) })
	return r.trigger
}

// Init fetches until the first success, backing off between failures, and
// returns nil once Current is set. If ctx ends first it returns an error
// wrapping ctx.Err() and the last fetch error.
func (r *Refresher) Init(ctx context.Context) error {
	if r.Fetch == nil {
		return errNoFetch
	}
	for failures := 1; ; failures++ {
		err := r.attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil {
			t := time.NewTimer(r.backoff(failures))
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no certificate yet: %w (last error: %w)", ctx.Err(), err)
		}
	}
}

// Run refreshes the certificate until ctx is done, then returns ctx.Err().
// Without a current certificate (Init not called or failed) it fetches at
// once. It starts no goroutines.
func (r *Refresher) Run(ctx context.Context) error {
	if r.Fetch == nil {
		return errNoFetch
	}
	trigger := r.triggerC()
	failures := 0
	var last time.Time // real time of Run's previous fetch
	for {
		var (
			wait time.Duration
			trig <-chan struct{}
		)
		switch cur := r.Current(); {
		case failures > 0:
			wait = r.backoff(failures)
			if cur == nil {
				// Without any certificate, a Trigger (a client waiting)
				// cuts the backoff short, though never below MinBackoff.
				trig = trigger
			}
		case cur == nil:
			wait = 0
		default:
			wait = r.nextRefresh(cur)
			trig = trigger
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-trig:
			t.Stop()
			if !last.IsZero() {
				if d := r.minBackoff() - time.Since(last); d > 0 {
					t.Reset(d)
					select {
					case <-ctx.Done():
						t.Stop()
						return ctx.Err()
					case <-t.C:
					}
				}
			}
		}
		last = time.Now()
		if err := r.attempt(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
		} else {
			failures = 0
		}
	}
}

// attempt fetches once and applies the result.
func (r *Refresher) attempt(ctx context.Context) error {
	select { // this fetch serves any pending Trigger
	case <-r.triggerC():
	default:
	}
	cs, err := r.Fetch(ctx)
	if err == nil {
		// Fetch checked validity with its own clock; never install a
		// certificate that has expired by ours.
		now := r.now()
		cs = slices.DeleteFunc(slices.Clone(cs), func(c *Cert) bool { return c == nil || expired(c, now) })
		if len(cs) == 0 {
			err = fmt.Errorf("%w: fetch returned no unexpired certificate", ErrNoValidCert)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			r.failed(err)
		}
		return err
	}
	r.apply(cs)
	return nil
}

func (r *Refresher) failed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.logger()
	cur := r.cur.Load()
	if cur == nil {
		log.Error("Unable to retrieve server certificates", "err", err)
		return
	}
	if now := r.now(); expired(cur, now) {
		if r.expiredLogged != cur {
			r.expiredLogged = cur
			log.Error(fmt.Sprintf("Certificate %s has expired and no valid one could be retrieved: answering SERVFAIL until one arrives",
				cur.SerialString()), "not_after", cur.NotAfter, "now", now.UTC(), "err", err)
			return
		}
		log.Error("Unable to retrieve server certificates", "err", err)
		return
	}
	log.Warn("Unable to retrieve server certificates; keeping the current one",
		"err", err, "serial", cur.Serial)
}

func expired(c *Cert, now time.Time) bool { return now.Unix() > c.NotAfter.Unix() }

// apply installs the best of cs if the switching rule says so.
func (r *Refresher) apply(cs []*Cert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.logger()
	now := r.now()
	best := Best(cs)
	cur := r.cur.Load()

	var reason string
	switch {
	case cur == nil:
		reason = "first certificate"
	case expired(cur, now):
		reason = "current certificate expired"
	case Better(best, cur):
		reason = "higher serial"
		if best.Serial == cur.Serial {
			reason = "higher es-version"
		}
	case !advertised(cs, cur):
		reason = "current certificate no longer advertised"
	}

	level := slog.LevelDebug
	if reason != "" {
		level = slog.LevelInfo
	}
	for _, c := range cs {
		LogReceived(log, level, c)
	}
	if reason == "" {
		log.Debug(fmt.Sprintf("Keeping certificate %s", cur.SerialString()))
		return
	}

	r.cur.Store(best)
	if cur != nil {
		log.Info(fmt.Sprintf("Switching from certificate %s to %s: %s",
			cur.SerialString(), best.SerialString(), reason))
	}
	LogChosen(log, best)
	if r.OnChange != nil {
		r.OnChange(best)
	}
}

// advertised reports whether c is among cs, byte for byte.
func advertised(cs []*Cert, c *Cert) bool {
	for _, x := range cs {
		if x == c || string(x.Raw) == string(c.Raw) {
			return true
		}
	}
	return false
}

// SerialString formats the serial as dnscrypt-proxy 1.x does: '0001' when
// its four bytes are ASCII digits (as some resolvers write it), else #N.
func (c *Cert) SerialString() string {
	s := c.Serial
	b := [4]byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
	for _, d := range b {
		if d < '0' || d > '9' {
			return fmt.Sprintf("#%d", s)
		}
	}
	return "'" + string(b[:]) + "'"
}

// LogReceived writes dnscrypt-proxy 1.x's line for a certificate received,
// at level.
func LogReceived(log *slog.Logger, level slog.Level, c *Cert) {
	log.Log(context.Background(), level, fmt.Sprintf("Server certificate with serial %s received", c.SerialString()),
		"es", c.Construction.String(), "not_before", c.NotBefore, "not_after", c.NotAfter)
}

// LogChosen writes dnscrypt-proxy 1.x's lines about the certificate chosen:
// its validity, the protocol version for es 2, a note when its validity
// exceeds 24 hours (bad for forward secrecy), the key fingerprint.
func LogChosen(log *slog.Logger, c *Cert) {
	log.Info(fmt.Sprintf("Chosen certificate %s is valid from [%s] to [%s]",
		c.SerialString(), c.NotBefore.Format(time.DateOnly), c.NotAfter.Format(time.DateOnly)),
		"es", c.Construction.String(), "not_before", c.NotBefore, "not_after", c.NotAfter)
	if c.Construction == dnscrypt.XChaCha20Poly1305 {
		log.Info("Using version 2.0 of the DNSCrypt protocol")
	}
	if v := c.NotAfter.Sub(c.NotBefore); v > longRotation {
		log.Info("The key rotation period for this server may exceed the recommended value. This is bad for forward secrecy.",
			"validity", v.String())
	}
	log.Info("Server key fingerprint is " + Fingerprint(c.ResolverPK[:]))
}

// nextRefresh is the wait after a success: Interval plus jitter, or until
// just after cur expires if that is sooner (but at least MinBackoff).
func (r *Refresher) nextRefresh(cur *Cert) time.Duration {
	d := positiveOr(r.Interval, DefaultInterval)
	if j := positiveOr(r.Jitter, DefaultJitter); j > 0 {
		d += rand.N(j)
	}
	untilExpired := cur.NotAfter.Add(time.Second).Sub(r.now())
	if untilExpired < d {
		d = max(untilExpired, r.minBackoff())
	}
	return d
}

// backoff is the wait after the n-th consecutive failure (n >= 1).
func (r *Refresher) backoff(n int) time.Duration {
	lo := r.minBackoff()
	hi := max(positiveOr(r.MaxBackoff, DefaultMaxBackoff), lo)
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

func (r *Refresher) minBackoff() time.Duration { return positiveOr(r.MinBackoff, DefaultMinBackoff) }

func positiveOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Refresher) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}
