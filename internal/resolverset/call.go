package resolverset

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// Errors of answers that make a query fail over.
var (
	errServfail = errors.New("resolverset: the resolver answered SERVFAIL")
	errRefused  = errors.New("resolverset: the resolver answered REFUSED")
	errSlower   = errors.New("resolverset: another resolver answered first")
)

// maxAttempts bounds the attempts of one query, hedges included.
const maxAttempts = 4

// call is one client query on the set: its attempts on members, and the
// outcome, given once to the outer query.
type call struct {
	s     *Set
	outer *upstream.Query
	// msg is the attempts' copy of outer.Msg (in buf when it fits): an
	// attempt may outlive the outer query, whose buffer the proxy reuses
	// once it is finished (a hedge's loser, canceled, may still read its
	// query), so no attempt is given outer.Msg itself.
	msg []byte
	buf [512]byte

	mu       sync.Mutex
	inflight []*attempt
	done     bool
	winner   *member // whose attempt answered
	tried    uint64  // members tried, a bit each
	nAtt     int
	hedged   bool
	lastErr  error
	last     *member
	timer    *time.Timer
}

// attempt is one try of a call on one member.
type attempt struct {
	q     upstream.Query
	c     *call
	m     *member
	start time.Time
}

// Exchange implements upstream.Upstream: the query goes to the member the
// selection picks; it fails over and is hedged as the package doc says.
func (s *Set) Exchange(outer *upstream.Query) {
	now := s.opts.Now()
	c := &call{s: s, outer: outer}
	c.msg = append(c.buf[:0], outer.Msg...)
	if !outer.SetCanceller(c) {
		outer.Finish(nil, context.Canceled)
		return
	}
	m := s.pick(outer.Identity)
	s.mu.Lock()
	s.budget.query(now)
	s.mu.Unlock()
	c.mu.Lock()
	a := c.startLocked(m, outer.Identity, now)
	if s.opts.Hedge && maxAttempts > 1 {
		c.timer = time.AfterFunc(m.hedgeDelay(outer.Identity, s.opts.HedgeMin, s.opts.HedgeMax), c.hedge)
	}
	c.mu.Unlock()
	m.Upstream.Exchange(&a.q)
}

// startLocked makes the attempt of c on m with identity id; c.mu held.
// The caller hands it to m's upstream, unlocked.
func (c *call) startLocked(m *member, id *upstream.Identity, now time.Time) *attempt {
	o := &c.s.opts
	a := &attempt{c: c, m: m, start: now}
	a.q = upstream.Query{Msg: c.msg, Limit: c.outer.Limit, TCP: c.outer.TCP, Identity: id, Done: a,
		Deadline: minTime(c.outer.Deadline, now.Add(m.attemptTimeout(o.AttemptMin, o.Timeout/3)))}
	c.tried |= 1 << m.index
	c.nAtt++
	c.inflight = append(c.inflight, a)
	m.queries.Add(1)
	return a
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// freshIdentity is the identity of a failover or a hedge: a circuit of its
// own when there are circuits.
func (s *Set) freshIdentity(id *upstream.Identity) *upstream.Identity {
	if s.opts.FreshIdentity != nil {
		return s.opts.FreshIdentity()
	}
	return id
}

// hedge sends the call once more if it is still unanswered: to the same
// member over another circuit, or to another member (HedgeOther, or when
// there is no other circuit to take).
func (c *call) hedge() {
	s := c.s
	now := s.opts.Now()
	c.mu.Lock()
	if c.done || c.hedged || c.nAtt >= maxAttempts || len(c.inflight) == 0 {
		c.mu.Unlock()
		return
	}
	s.mu.Lock()
	ok := s.budget.take(now)
	s.mu.Unlock()
	if !ok {
		c.mu.Unlock()
		return
	}
	c.hedged = true
	first := c.inflight[0].m
	m := first
	if s.opts.HedgeOther || s.opts.FreshIdentity == nil {
		if other := s.failoverPick(c.tried, first); other != nil {
			m = other
		}
	}
	a := c.startLocked(m, s.freshIdentity(c.outer.Identity), now)
	c.mu.Unlock()
	s.log.Debug("Hedging", "first", first.Name, "hedge", m.Name)
	m.Upstream.Exchange(&a.q)
}

// Receive implements upstream.Receiver for an attempt.
func (a *attempt) Receive(q *upstream.Query, answer []byte, err error) {
	c, s, m := a.c, a.c.s, a.m
	now := s.opts.Now()
	if err == nil {
		err = answerError(answer)
	}
	switch {
	case err == nil:
		if m.recordSuccess(now.Sub(a.start), a.q.Identity) {
			s.noteRecovered(m)
		}
	case errors.Is(err, context.Canceled), errors.Is(err, upstream.ErrClosed):
		// Ours: another attempt won, or the client's request ended. A
		// loser was slower: its time so far is noted, and losing to
		// another resolver counts as a failure (a resolver that never
		// answers never times out while hedges rescue its queries).
		c.mu.Lock()
		winner := c.winner
		c.mu.Unlock()
		if winner != nil {
			m.recordLoss(now.Sub(a.start))
			if winner != m {
				m.failures.Add(1)
				if m.recordFailure(now, errSlower, s.opts.BenchAfter, s.opts.BenchMin, s.opts.BenchMax) {
					s.noteBenched(m, fmt.Errorf("%w (%s)", errSlower, winner.Name))
				}
			}
		}
	default:
		m.failures.Add(1)
		if m.recordFailure(now, err, s.opts.BenchAfter, s.opts.BenchMin, s.opts.BenchMax) {
			s.noteBenched(m, err)
		}
	}

	c.mu.Lock()
	c.remove(a)
	if c.done {
		c.mu.Unlock()
		return
	}
	if err == nil {
		c.done, c.winner = true, m
		others := c.stopLocked()
		c.mu.Unlock()
		for _, o := range others {
			o.q.Cancel()
		}
		c.outer.OverTCP = q.OverTCP
		c.outer.Finish(answer, nil)
		return
	}
	c.lastErr, c.last = err, m
	if next := c.failoverLocked(now, err); next != nil {
		c.mu.Unlock()
		s.log.Debug("Failing over", "from", m.Name, "to", next.m.Name, "err", err)
		next.m.Upstream.Exchange(&next.q)
		return
	}
	s.log.Debug("Attempt failed", "resolver", m.Name, "err", err, "others_in_flight", len(c.inflight))
	if len(c.inflight) > 0 { // a hedge may still answer
		c.mu.Unlock()
		return
	}
	c.done = true
	c.stopLocked()
	c.mu.Unlock()
	c.outer.Finish(nil, c.lastErr)
}

// failoverLocked starts the next attempt after a failure, if the query may
// fail over: not canceled, time left for an attempt, attempts left, and
// another member to try (or, through a proxy, the same over another
// circuit when it is the only one). c.mu held.
func (c *call) failoverLocked(now time.Time, err error) *attempt {
	s := c.s
	if errors.Is(err, context.Canceled) || c.nAtt >= maxAttempts || c.outer.Canceled() ||
		c.outer.Deadline.Sub(now) < s.opts.HedgeMin {
		return nil
	}
	m := s.failoverPick(c.tried, c.last)
	if m == nil {
		if s.opts.FreshIdentity == nil {
			return nil
		}
		// Every resolver tried: through a proxy, once more over another
		// circuit (a timeout or a refusal there is often the circuit's or
		// the exit's), on a resolver in the selection, another than the
		// last if there is one.
		if m = s.retryPick(c.last); m == nil {
			return nil
		}
	}
	return c.startLocked(m, s.freshIdentity(c.outer.Identity), now)
}

// remove takes a out of the attempts in flight; c.mu held.
func (c *call) remove(a *attempt) {
	for i, x := range c.inflight {
		if x == a {
			c.inflight = append(c.inflight[:i], c.inflight[i+1:]...)
			return
		}
	}
}

// stopLocked stops the hedge timer and returns the attempts still in
// flight, to cancel once c.mu is released. c.mu held.
func (c *call) stopLocked() []*attempt {
	if c.timer != nil {
		c.timer.Stop()
	}
	return append([]*attempt(nil), c.inflight...)
}

// Claim implements upstream.Canceller for the outer query: the attempts
// are canceled (on another goroutine: their upstreams may finish them at
// once, and the outer query's lock is held here), and the call finishes
// once they all have.
func (c *call) Claim(*upstream.Query) bool {
	c.mu.Lock()
	others := append([]*attempt(nil), c.inflight...)
	c.mu.Unlock()
	go func() {
		for _, a := range others {
			a.q.Cancel()
		}
	}()
	return false
}

// Abandon implements upstream.Canceller; Claim never claims.
func (c *call) Abandon(*upstream.Query) {}

// answerError returns the error of an answer that should fail over:
// SERVFAIL or REFUSED from the resolver.
func answerError(ans []byte) error {
	if len(ans) < 4 {
		return upstream.ErrCorrupt
	}
	switch int(ans[3] & 0x0F) {
	case dns.RcodeServerFailure:
		return errServfail
	case dns.RcodeRefused:
		return errRefused
	}
	return nil
}

// prober probes the benched members every ProbeInterval, until ctx ends.
func (s *Set) prober(ctx context.Context) {
	t := time.NewTicker(s.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := s.opts.Now()
			for _, m := range s.members {
				if m.dueProbe(now) {
					p := &probe{s: s, m: m, start: now}
					p.q = upstream.Query{Msg: s.probe, Limit: 1232, Identity: s.freshIdentity(s.directID), Done: p,
						Deadline: now.Add(s.opts.Timeout / 3)}
					m.Upstream.Exchange(&p.q)
				}
			}
		}
	}
}

// probe is a query of the root's NS records to a benched member: any
// answer but SERVFAIL brings it back. REFUSED does too: the resolver
// answers, and may refuse that question by policy while it serves the
// names it is asked for (a resolver that refuses those is benched again
// after BenchAfter of them, each failed over).
type probe struct {
	q     upstream.Query
	s     *Set
	m     *member
	start time.Time
}

func (p *probe) Receive(q *upstream.Query, answer []byte, err error) {
	now := p.s.opts.Now()
	if err == nil {
		if err = answerError(answer); errors.Is(err, errRefused) {
			err = nil
		}
	}
	if err == nil {
		if p.m.recordSuccess(now.Sub(p.start), q.Identity) {
			p.s.noteRecovered(p.m)
		}
		return
	}
	p.m.recordFailure(now, err, p.s.opts.BenchAfter, p.s.opts.BenchMin, p.s.opts.BenchMax)
}
