package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// failureWindow is how long the log stays quiet about a kind of failure
// after it reported one: the failures of that kind meanwhile are counted,
// and the count comes with the next line ("... 551 more in the last 10s").
const failureWindow = 10 * time.Second

// failureKind sorts upstream failures for the log. One outage makes the
// same kind of failure for every query, with error texts that differ (a
// source port, a nonce): the log says it once per window and counts the
// rest.
type failureKind uint8

const (
	failTimeout     failureKind = iota // no answer within the deadline
	failRefused                        // connection refused, port unreachable
	failUnreachable                    // no route, network or host unreachable
	failSOCKS                          // the SOCKS proxy failed or refused
	failCorrupt                        // an answer that does not decrypt or verify
	failMismatch                       // an answer to another question
	failNoCert                         // no valid certificate
	failCertificate                    // a TLS certificate refused (pins, name, dates)
	failHTTPStatus                     // a DoH server answered with an HTTP error
	failEvicted                        // dropped to admit a newer request
	failOverload                       // no upstream connection slot in time
	failOther
	// noteTruncatedTCP is not a failure: the resolver truncated an answer
	// over TCP, and the client gets it with TC set.
	noteTruncatedTCP
	// noteFiltered is not a failure: internal addresses were removed from
	// an answer (DNS rebinding protection).
	noteFiltered
	numFailureKinds
)

var failureNames = [numFailureKinds]string{
	failTimeout:      "timeout",
	failRefused:      "refused",
	failUnreachable:  "unreachable",
	failSOCKS:        "socks",
	failCorrupt:      "corrupt",
	failMismatch:     "mismatch",
	failNoCert:       "no-certificate",
	failCertificate:  "tls-certificate",
	failHTTPStatus:   "http-status",
	failEvicted:      "evicted",
	failOverload:     "overload",
	failOther:        "other",
	noteTruncatedTCP: "truncated-over-tcp",
	noteFiltered:     "internal-addresses",
}

func (k failureKind) String() string { return failureNames[k] }

// Errors that name their kind.
var (
	errEvicted      = errors.New("too many active requests: dropped the oldest")
	errShed         = errors.New("too many active requests: dropped the newest")
	errStopping     = errors.New("the proxy is stopping")
	errTruncatedTCP = errors.New("the answer came over TCP with TC set")
)

// classify returns the kind of an upstream failure.
func classify(err error) failureKind {
	switch {
	case errors.Is(err, errEvicted), errors.Is(err, errShed):
		return failEvicted
	case errors.Is(err, upstream.ErrOverload):
		return failOverload
	case errors.Is(err, upstream.ErrNoCert):
		return failNoCert
	case errors.Is(err, upstream.ErrCertificate):
		return failCertificate
	case errors.Is(err, upstream.ErrHTTPStatus):
		return failHTTPStatus
	case errors.Is(err, egress.ErrSOCKS):
		return failSOCKS
	case errors.Is(err, upstream.ErrCorrupt):
		return failCorrupt
	case errors.Is(err, edns.ErrMismatch):
		return failMismatch
	case errors.Is(err, syscall.ECONNREFUSED):
		return failRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return failUnreachable
	case errors.Is(err, upstream.ErrUDPTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return failTimeout
	}
	return failOther
}

// failureLog writes one line per kind of failure per window, and counts
// the others. Safe for concurrent use.
type failureLog struct {
	log    *slog.Logger
	window time.Duration

	mu    sync.Mutex
	kinds [numFailureKinds]failureCount
}

type failureCount struct {
	logged     time.Time // when the last line about this kind was written
	suppressed int       // failures since, not logged
	last       error     // the last of them
}

// report logs err, of kind k, at now: at once if the window since the
// last line of its kind is over (with the count of those not logged
// meanwhile), or else counts it.
func (f *failureLog) report(now time.Time, k failureKind, err error) {
	f.mu.Lock()
	c := &f.kinds[k]
	if !c.logged.IsZero() && now.Sub(c.logged) < f.window {
		c.suppressed++
		c.last = err
		f.mu.Unlock()
		return
	}
	more := c.suppressed
	c.logged, c.suppressed, c.last = now, 0, nil
	f.mu.Unlock()
	f.write(k, err, more)
}

// flush writes the count of the failures not logged in windows that are
// over by now, so that the last ones of an outage are reported too.
func (f *failureLog) flush(now time.Time) {
	type line struct {
		k    failureKind
		err  error
		more int
	}
	var lines []line
	f.mu.Lock()
	for k := range f.kinds {
		c := &f.kinds[k]
		if c.suppressed > 0 && now.Sub(c.logged) >= f.window {
			lines = append(lines, line{failureKind(k), c.last, c.suppressed - 1})
			c.logged, c.suppressed, c.last = now, 0, nil
		}
	}
	f.mu.Unlock()
	for _, l := range lines {
		f.write(l.k, l.err, l.more)
	}
}

func (f *failureLog) write(k failureKind, err error, more int) {
	msg := "Unable to get an answer from the resolver, answering SERVFAIL"
	switch k {
	case failEvicted:
		msg = "Too many active requests: answering SERVFAIL to the oldest stalled ones, or else to the newest"
	case noteTruncatedTCP:
		msg = "The resolver truncated an answer over TCP: the client gets it with TC set"
	case noteFiltered:
		msg = "Removed internal addresses from an answer (DNS rebinding protection)"
	}
	if more > 0 {
		msg += fmt.Sprintf(" (and %d more in the last %v)", more, f.window)
	}
	level := slog.LevelWarn
	if k >= noteTruncatedTCP {
		level = slog.LevelInfo
	}
	f.log.Log(context.Background(), level, msg, "kind", k.String(), "err", err)
}

func (p *Proxy) debug(msg string, args ...any) {
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug(msg, args...)
	}
}
