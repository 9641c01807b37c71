// Package upstream carries DNS queries to resolvers: one [Upstream] per
// resolver, of one kind (DNSCrypt, plain DNS over TCP, DNS over TLS, DNS
// over HTTPS), built from a [Spec], working on wire bytes. Every
// connection an upstream opens goes through one egress.Dialer, directly or
// through SOCKS5.
//
// The proxy's frontend prepares each client query (edns.PrepareQuery),
// hands it to an upstream in a [Query], and gets the answer back through
// the Query's [Receiver]:
//
//	q := &upstream.Query{Msg: prepared, Limit: 1232, Deadline: deadline, Identity: id, Done: r}
//	up.Exchange(q) // r.Receive(q, answer, err) is called exactly once, now or later
package upstream

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Errors that the frontend tells apart (for the log); every error an
// upstream returns wraps one of them or a network error.
var (
	// ErrNoCert: a DNSCrypt upstream has no valid certificate (yet).
	ErrNoCert = errors.New("upstream: no usable certificate yet")
	// ErrCorrupt: an answer that does not decrypt, verify or parse.
	ErrCorrupt = errors.New("upstream: corrupted answer")
	// ErrOverload: no connection slot within the deadline.
	ErrOverload = errors.New("upstream: too many connections: no slot within the deadline")
	// ErrUDPTimeout: no answer over UDP in time (before the TCP retry).
	ErrUDPTimeout = errors.New("upstream: no response over UDP")
	// ErrClosed: the upstream was closed.
	ErrClosed = errors.New("upstream: closed")
	// ErrHostName: a resolver named by host name without a proxy to
	// resolve it (it is never looked up locally).
	ErrHostName = errors.New("upstream: a host name works only through a proxy")
)

// Upstream carries queries to one resolver. Its methods are safe for
// concurrent use.
type Upstream interface {
	// Exchange starts one attempt at q and returns at once. The upstream
	// ends it with q.Finish, exactly once, with the answer or an error,
	// possibly before Exchange returns and possibly from another
	// goroutine; after that it no longer touches q.
	Exchange(q *Query)
	// Run does the upstream's background work (certificate refreshes,
	// timeouts, idle connections) until ctx is done.
	Run(ctx context.Context)
	// Ready is closed once the upstream can carry queries (a DNSCrypt
	// upstream: its first certificate).
	Ready() <-chan struct{}
	// Stream reports whether queries go over a byte stream only (TCP,
	// TLS, HTTPS): the answer size is then bounded by the message format,
	// not by UDP, and a query may advertise what its client can take.
	Stream() bool
	// Refresh asks for an early check of what the upstream holds
	// (certificates; SIGUSR1), without waiting.
	Refresh()
	// String names the upstream in logs: "dnscrypt 192.0.2.1:443",
	// "tls dns.example:853".
	String() string
	// Close releases what the upstream holds (sockets, connections) and
	// fails the queries in flight; call it after Run returned.
	Close() error
}

// Receiver gets the outcome of a Query.
type Receiver interface {
	// Receive is called exactly once per Exchange, by Query.Finish: answer
	// is the whole DNS message as the resolver sent it (TC possibly set),
	// with the query's ID, valid only during the call; or err says why
	// there is none. It must not block.
	Receive(q *Query, answer []byte, err error)
}

// Query is one attempt at resolving a client's query on one upstream. The
// caller fills the exported fields, passes it to Exchange and does not
// touch it until Done was called; it may then reuse it after Reset.
type Query struct {
	// Msg is the DNS query as edns.PrepareQuery made it, with the client's
	// ID. The upstream only reads it.
	Msg []byte
	// Limit is the largest answer the client takes (512 to 65535); an
	// upstream over UDP sizes its query so that the answer fits.
	Limit int
	// TCP: the client asked over TCP (a DNSCrypt upstream then asks over
	// TCP as well: the answer may be up to 64 KB).
	TCP bool
	// Deadline ends the attempt.
	Deadline time.Time
	// Identity decides the circuit (SOCKS credentials) and, for DNSCrypt,
	// the client key pair.
	Identity *Identity
	// Done receives the outcome.
	Done Receiver

	// OverTCP is set by the upstream, before Done, when the answer came
	// over a byte stream (TCP, TLS, HTTPS): a truncated one is then the
	// resolver's doing, worth a log line.
	OverTCP bool

	mu        sync.Mutex
	canceled  bool
	finished  bool
	canceller Canceller
	ctx       context.Context
	stop      context.CancelFunc
}

// Canceller is an upstream's hook for giving up a query it holds without a
// goroutine (a DNSCrypt query waiting for its UDP answer).
type Canceller interface {
	// Claim takes q back from where it waits, if it still does, and
	// reports whether it did. It is called with q's lock held: it must
	// not call back into q.
	Claim(q *Query) bool
	// Abandon ends q, claimed, with q.Finish(nil, context.Canceled).
	Abandon(q *Query)
}

// Reset clears q's state for another Exchange; the exported fields stay.
func (q *Query) Reset() {
	q.mu.Lock()
	if q.stop != nil {
		q.stop()
	}
	q.canceled, q.finished, q.canceller, q.ctx, q.stop, q.OverTCP = false, false, nil, nil, nil, false
	q.mu.Unlock()
}

// Finish ends q: the upstream calls it exactly once, and then no longer
// touches q. It calls q.Done.Receive.
func (q *Query) Finish(answer []byte, err error) {
	q.mu.Lock()
	q.finished, q.canceller = true, nil
	q.mu.Unlock()
	q.Done.Receive(q, answer, err)
}

// Cancel asks the upstream to give up q (the request was evicted, another
// attempt answered first, the proxy stops). The upstream still finishes
// q, soon, with context.Canceled, unless it has already. Cancel after
// Finish does nothing.
func (q *Query) Cancel() {
	q.mu.Lock()
	q.canceled = true
	var claimed Canceller
	if !q.finished && q.canceller != nil && q.canceller.Claim(q) {
		claimed = q.canceller
	}
	q.canceller = nil
	stop := q.stop
	q.mu.Unlock()
	if stop != nil {
		stop()
	}
	if claimed != nil {
		claimed.Abandon(q)
	}
}

// Canceled reports whether Cancel was called.
func (q *Query) Canceled() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.canceled
}

// SetCanceller registers c to be called by Cancel. It returns false, and
// registers nothing, if q is canceled already.
func (q *Query) SetCanceller(c Canceller) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.canceled {
		return false
	}
	q.canceller = c
	return true
}

// Context returns a context that ends at q's deadline or when q is
// canceled, for upstreams that work on a goroutine. It is made on the
// first call (a query answered without one costs no allocation).
func (q *Query) Context() context.Context {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ctx == nil {
		q.ctx, q.stop = context.WithDeadline(context.Background(), q.Deadline)
		if q.canceled {
			q.stop()
		}
	}
	return q.ctx
}

// Err returns why q ended early: context.Canceled if it was canceled,
// context.DeadlineExceeded if its deadline passed at now, or nil.
func (q *Query) Err(now time.Time) error {
	if q.Canceled() {
		return context.Canceled
	}
	if !now.Before(q.Deadline) {
		return context.DeadlineExceeded
	}
	return nil
}
