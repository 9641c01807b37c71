// Package resolverset spreads queries over several resolvers, so that no
// resolver sees a user's whole history and one dead or slow resolver (or
// Tor circuit) does not fail the user:
//
//   - selection: in Tor mode each isolation epoch picks its resolver
//     afresh (Rotate), another than the last epoch's and if possible of
//     another operator; directly, the fastest healthy resolvers by
//     measured answer time, with some exploration (Fastest);
//   - failover: a query that fails (timeout, SERVFAIL or REFUSED from the
//     resolver, no certificate, connection refused, SOCKS error) is asked
//     again of another resolver, in Tor mode over another circuit, within
//     the query's deadline; a resolver that keeps failing is benched, with
//     exponential backoff, and probed in the background until it answers
//     again;
//   - hedging: a query whose answer is late (later than the 90th
//     percentile of its resolver's answer times, within bounds) is sent
//     once more, over another circuit (to the same resolver in Tor mode by
//     default, which shows it nothing new; to another one directly, or
//     with HedgeOther); the first good answer wins. A budget keeps hedges
//     to a small share of the queries. Until an identity has had an answer
//     from a resolver (a new epoch's circuit, and for TCP, DoT and DoH its
//     new connection), its queries are hedged only after HedgeMax: the
//     warm answer times do not include a circuit and a handshake.
//
// A Set is an upstream.Upstream made of upstreams: the proxy's frontend
// uses it as it would use one resolver.
package resolverset

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// Selection is how a query's first resolver is chosen.
type Selection int

const (
	// Rotate picks a resolver per identity (an isolation epoch's circuit,
	// or every query with query isolation): another than the previous
	// identity's, preferring another operator, at random among the
	// healthy ones. Tor mode's default.
	Rotate Selection = iota
	// Fastest picks at random between the two healthy resolvers with the
	// lowest median answer time (the second only if it is nearly as fast:
	// at most twice the first's, plus 1 ms), and one time in twenty any
	// healthy one (to keep the others' times current). The default
	// directly.
	Fastest
)

func (s Selection) String() string {
	if s == Fastest {
		return "fastest"
	}
	return "rotate"
}

// Defaults of Options.
const (
	DefaultHedgeMin      = 20 * time.Millisecond
	DefaultHedgeMax      = time.Second
	DefaultAttemptMin    = 2 * time.Second
	DefaultBenchAfter    = 3
	DefaultBenchMin      = time.Second
	DefaultBenchMax      = 5 * time.Minute
	DefaultProbeInterval = 250 * time.Millisecond
	DefaultRotateEvery   = 10 * time.Minute
	// hedgeShare and hedgeBurst bound hedges: at most burst plus share of
	// the queries of the last second or two.
	hedgeShare = 0.1
	hedgeBurst = 10
	// explore is one in how many queries Fastest sends to any healthy
	// resolver.
	explore = 20
)

// Options configure a Set. Zero values take defaults.
type Options struct {
	Selection Selection
	// Hedge sends a late query once more (see the package doc);
	// HedgeOther sends it to another resolver rather than the same one
	// over another circuit.
	Hedge, HedgeOther bool
	// RotateEvery: Rotate picks another resolver at least this often,
	// even while the queries' credentials stay the same (directly, or
	// with one circuit for the whole run); a new identity picks afresh
	// anyway. Zero: DefaultRotateEvery.
	RotateEvery time.Duration
	// HedgeMin and HedgeMax bound the hedge delay.
	HedgeMin, HedgeMax time.Duration
	// Timeout is the query's whole deadline, for attempt timeouts: an
	// attempt may take eight times its resolver's 90th percentile, at
	// least AttemptMin, at most a third of Timeout (so that failover has
	// time left). Zero: 10 s.
	Timeout, AttemptMin time.Duration
	// BenchAfter failures in a row bench a resolver; it is probed after
	// BenchMin, then twice as long after each failed probe, up to
	// BenchMax, every ProbeInterval at most.
	BenchAfter                        int
	BenchMin, BenchMax, ProbeInterval time.Duration
	// FreshIdentity returns an identity on a circuit of its own, for
	// failover, hedges and probes; nil reuses the query's (directly there
	// are no circuits).
	FreshIdentity func() *upstream.Identity
	// Now is the clock; nil means time.Now. Waits use real timers.
	Now func() time.Time
	// Rand draws the random choices; nil uses math/rand/v2's source.
	Rand *rand.Rand
	// Logger receives the benched and recovered lines; nil discards them.
	Logger *slog.Logger
}

// Set is a set of resolvers used as one upstream.
type Set struct {
	opts    Options
	log     *slog.Logger
	members []*member
	ready   chan struct{}
	probe   []byte

	// directID is the identity of probes when there are no circuits.
	directID *upstream.Identity

	mu       sync.Mutex
	rotKey   egress.Credentials // the credentials of the current rotation pick
	rotPick  *member
	rotAt    time.Time // when rotPick was picked
	rotPrev  *member
	nQueries int // Fastest: for exploration
	budget   hedgeBudget
	randMu   sync.Mutex
}

var _ upstream.Upstream = (*Set)(nil)

// New returns the Set of members, with opts.
func New(members []Member, opts Options) (*Set, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("resolverset: no resolver")
	}
	if len(members) > 64 {
		return nil, fmt.Errorf("resolverset: %d resolvers, at most 64", len(members))
	}
	o := &opts
	o.HedgeMin = positive(o.HedgeMin, DefaultHedgeMin)
	o.HedgeMax = positive(o.HedgeMax, DefaultHedgeMax)
	o.Timeout = positive(o.Timeout, 10*time.Second)
	o.AttemptMin = positive(o.AttemptMin, DefaultAttemptMin)
	o.BenchMin = positive(o.BenchMin, DefaultBenchMin)
	o.BenchMax = positive(o.BenchMax, DefaultBenchMax)
	o.ProbeInterval = positive(o.ProbeInterval, DefaultProbeInterval)
	o.RotateEvery = positive(o.RotateEvery, DefaultRotateEvery)
	if o.BenchAfter <= 0 {
		o.BenchAfter = DefaultBenchAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Set{opts: opts, log: opts.Logger, ready: make(chan struct{}),
		directID: upstream.NewIdentity(egress.Credentials{}, nil, opts.Now())}
	for i, m := range members {
		s.members = append(s.members, &member{Member: m, index: i})
	}
	probe := new(dns.Msg)
	probe.SetQuestion(".", dns.TypeNS)
	probe.SetEdns0(1232, false)
	var err error
	if s.probe, err = probe.Pack(); err != nil {
		return nil, err
	}
	return s, nil
}

func positive(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (s *Set) intn(n int) int {
	if s.opts.Rand == nil {
		return rand.IntN(n)
	}
	s.randMu.Lock()
	defer s.randMu.Unlock()
	return s.opts.Rand.IntN(n)
}

// String names the set in logs: its members' names.
func (s *Set) String() string {
	names := make([]string, len(s.members))
	for i, m := range s.members {
		names[i] = m.Upstream.String()
	}
	return fmt.Sprintf("%d resolvers (%s)", len(s.members), strings.Join(names, ", "))
}

// Ready is closed once a member is ready: the set can answer (queries go
// to the ready members only; see healthy). The proxy does not wait for it
// forever: see proxy.Serve.
func (s *Set) Ready() <-chan struct{} { return s.ready }

// Stream reports whether every member is reached over a byte stream.
func (s *Set) Stream() bool {
	for _, m := range s.members {
		if !m.Upstream.Stream() {
			return false
		}
	}
	return true
}

// Refresh asks every member for an early check.
func (s *Set) Refresh() {
	for _, m := range s.members {
		m.Upstream.Refresh()
	}
}

// Close closes every member.
func (s *Set) Close() error {
	var errs []error
	for _, m := range s.members {
		if err := m.Upstream.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// Run runs every member's background work, reports readiness, and probes
// the benched members, until ctx is done.
func (s *Set) Run(ctx context.Context) {
	var wg sync.WaitGroup
	var once sync.Once
	for _, m := range s.members {
		wg.Go(func() { m.Upstream.Run(ctx) })
		wg.Go(func() {
			select {
			case <-m.Upstream.Ready():
				m.ready.Store(true)
				once.Do(func() { close(s.ready) })
			case <-ctx.Done():
			}
		})
	}
	wg.Go(func() { s.prober(ctx) })
	wg.Wait()
}

// Selection returns the set's selection.
func (s *Set) Selection() Selection { return s.opts.Selection }

// Status returns the state of every member.
func (s *Set) Status() []Status {
	st := make([]Status, len(s.members))
	for i, m := range s.members {
		st[i] = m.status()
	}
	return st
}

// healthy returns the members in the selection (ready: a DNSCrypt one has
// its first certificate; and not benched), or all of them when none is (a
// client must be tried on something).
func (s *Set) healthy(out []*member) []*member {
	for _, m := range s.members {
		if m.ready.Load() && m.up() {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		// None known ready (Run has not seen it yet, or none is): the
		// members not benched, and only if all are, every member.
		for _, m := range s.members {
			if m.up() {
				out = append(out, m)
			}
		}
	}
	if len(out) == 0 {
		out = append(out, s.members...)
	}
	return out
}

// pick chooses the first resolver of a query of identity id.
func (s *Set) pick(id *upstream.Identity) *member {
	if len(s.members) == 1 {
		return s.members[0]
	}
	var buf [64]*member
	cands := s.healthy(buf[:0])
	if s.opts.Selection == Fastest {
		return s.fastest(cands)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if id != nil && id.Credentials == s.rotKey && now.Sub(s.rotAt) < s.opts.RotateEvery && slices.Contains(cands, s.rotPick) {
		return s.rotPick
	}
	prev := s.rotPick
	m := s.rotate(cands, prev)
	if id != nil {
		s.rotKey = id.Credentials
	}
	s.rotPrev, s.rotPick, s.rotAt = prev, m, now
	return m
}

// rotate picks at random among cands, avoiding prev and, if it can,
// prev's operator.
func (s *Set) rotate(cands []*member, prev *member) *member {
	var buf [64]*member
	pool := buf[:0]
	if prev != nil && prev.Operator != "" {
		for _, m := range cands {
			if m.Operator != prev.Operator {
				pool = append(pool, m)
			}
		}
	}
	if len(pool) == 0 {
		for _, m := range cands {
			if m != prev {
				pool = append(pool, m)
			}
		}
	}
	if len(pool) == 0 {
		pool = cands
	}
	return pool[s.intn(len(pool))]
}

// fastest picks between the two fastest of cands, or one time in explore
// any of them; members without answer times yet count as fastest (so they
// get measured).
func (s *Set) fastest(cands []*member) *member {
	s.mu.Lock()
	s.nQueries++
	exploring := s.nQueries%explore == 0
	s.mu.Unlock()
	if exploring || len(cands) == 1 {
		return cands[s.intn(len(cands))]
	}
	var first, second *member
	var t1, t2 time.Duration
	for _, m := range cands {
		p50, _, _ := m.latency()
		switch {
		case first == nil || p50 < t1:
			second, t2 = first, t1
			first, t1 = m, p50
		case second == nil || p50 < t2:
			second, t2 = m, p50
		}
	}
	// The second fastest shares the load only if it is nearly as fast.
	if second == nil || t2 > 2*t1+time.Millisecond || s.intn(2) == 0 {
		return first
	}
	return second
}

// failoverPick chooses the next resolver of a query that tried the
// members in tried (a bit set) and failed last on last: another one, of
// another operator if possible, by the selection; nil if none is left.
func (s *Set) failoverPick(tried uint64, last *member) *member {
	var buf, other [64]*member
	cands := buf[:0]
	for _, m := range s.healthy(other[:0]) {
		if tried&(1<<m.index) == 0 {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	if s.opts.Selection == Fastest {
		return s.fastest(cands)
	}
	return s.rotate(cands, last)
}

// retryPick chooses the resolver of a query's next attempt once every one
// was tried: with one resolver, that one; else one in the selection
// (ready, not benched) other than last, or last if it alone still is.
func (s *Set) retryPick(last *member) *member {
	if len(s.members) == 1 {
		return s.members[0]
	}
	// failoverPick falls back on every member when none is in the
	// selection: a retry does not.
	if m := s.failoverPick(1<<last.index, last); m != nil && m.ready.Load() && m.up() {
		return m
	}
	if last.ready.Load() && last.up() {
		return last
	}
	return nil
}

// hedgeBudget allows hedges up to a share of the queries of the current
// and the previous second, plus a burst.
type hedgeBudget struct {
	start           time.Time
	queries, hedges [2]int
}

func (b *hedgeBudget) roll(now time.Time) {
	switch d := now.Sub(b.start); {
	case d >= 2*time.Second:
		b.start, b.queries, b.hedges = now, [2]int{}, [2]int{}
	case d >= time.Second:
		b.start = b.start.Add(time.Second)
		b.queries = [2]int{b.queries[1], 0}
		b.hedges = [2]int{b.hedges[1], 0}
	}
}

func (b *hedgeBudget) query(now time.Time) {
	b.roll(now)
	b.queries[1]++
}

func (b *hedgeBudget) take(now time.Time) bool {
	b.roll(now)
	q, h := b.queries[0]+b.queries[1], b.hedges[0]+b.hedges[1]
	if float64(h) >= hedgeShare*float64(q)+hedgeBurst {
		return false
	}
	b.hedges[1]++
	return true
}

// benched logs a member's leaving or coming back.
func (s *Set) noteBenched(m *member, err error) {
	s.log.Info(fmt.Sprintf("Resolver %s benched after %d failures in a row: trying the others, probing it in the background",
		m.Name, s.opts.BenchAfter), "err", err)
}

func (s *Set) noteRecovered(m *member) {
	s.log.Info(fmt.Sprintf("Resolver %s answers again: back in the selection", m.Name))
}
