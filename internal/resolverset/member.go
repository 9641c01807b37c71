package resolverset

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// Member is one resolver of a Set.
type Member struct {
	Upstream upstream.Upstream
	// Name names it in logs and in the status.
	Name string
	// Operator is who runs it: rotation prefers a resolver of another
	// operator than the last epoch's (see Operator). Empty: unknown, a
	// member of its own.
	Operator string
}

// rttWindow is how many recent answer times a member keeps for its
// median and 90th percentile.
const rttWindow = 64

// member is a Member with its health and statistics.
type member struct {
	Member
	index int
	ready atomic.Bool // its upstream is ready (see Set.Run)

	queries, failures atomic.Int64

	mu          sync.Mutex
	rtts        [rttWindow]time.Duration
	nRTT        int // samples in rtts (at most rttWindow)
	next        int // where the next sample goes
	p50, p90    time.Duration
	stale       int  // samples since p50 and p90 were computed
	consecutive int  // failures in a row
	benched     bool // out of the selection until a probe succeeds
	backoff     time.Duration
	nextProbe   time.Time
	probing     bool
	lastErr     error
	// warm is the identity (SOCKS credentials) of the last answer: its
	// connection and circuit exist. An attempt on another identity pays
	// for a new circuit and, for TCP, DoT and DoH, a new connection and
	// handshake, which the answer times of warm attempts do not show.
	warm    egress.Credentials
	hasWarm bool
}

// Health of a member, for the status.
const (
	stateStarting = "starting" // not ready yet (a DNSCrypt resolver without a certificate)
	stateUp       = "up"
	stateBenched  = "benched"
)

// recordSuccess notes an answer that took d on identity id (nil: none),
// and whether it ended a bench (the caller logs that).
func (m *member) recordSuccess(d time.Duration, id *upstream.Identity) (recovered bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sampleLocked(d)
	m.warm, m.hasWarm = credentials(id), true
	m.consecutive = 0
	recovered = m.benched
	m.benched, m.backoff, m.probing = false, 0, false
	return recovered
}

// recordLoss notes an attempt that was still unanswered after d when
// another attempt of its query answered: d is a lower bound of its answer
// time, which keeps a slow or silent resolver from looking fast (it is not
// a failure: the resolver may just be slower than the winner).
func (m *member) recordLoss(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sampleLocked(d)
}

// sampleLocked adds an answer time to the window; m.mu held.
func (m *member) sampleLocked(d time.Duration) {
	m.rtts[m.next] = d
	m.next = (m.next + 1) % rttWindow
	m.nRTT = min(m.nRTT+1, rttWindow)
	if m.stale++; m.stale >= 8 || m.nRTT <= 8 {
		m.percentiles()
	}
}

// percentiles recomputes p50 and p90 from the window; m.mu held.
func (m *member) percentiles() {
	var buf [rttWindow]time.Duration
	s := buf[:m.nRTT]
	copy(s, m.rtts[:m.nRTT])
	slices.Sort(s)
	m.p50, m.p90 = s[len(s)/2], s[len(s)*9/10]
	m.stale = 0
}

// recordFailure notes a failure at now and reports whether it benched
// the member (the caller logs that): after benchAfter failures in a row,
// a member is out of the selection, and probed after min, then twice as
// long after each failed probe, up to max.
func (m *member) recordFailure(now time.Time, err error, benchAfter int, minB, maxB time.Duration) (benched bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastErr = err
	m.consecutive++
	switch {
	case m.benched:
		// A failed probe, or an attempt made while every member was
		// benched: wait longer.
		m.backoff = min(max(2*m.backoff, minB), maxB)
		m.nextProbe = now.Add(m.backoff)
		m.probing = false
	case m.consecutive >= benchAfter:
		m.benched, m.backoff, m.nextProbe, m.probing = true, minB, now.Add(minB), false
		return true
	}
	return false
}

// up reports whether the member is in the selection.
func (m *member) up() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.benched
}

// dueProbe reports whether a benched member should be probed at now, and
// marks the probe as started.
func (m *member) dueProbe(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.benched || m.probing || now.Before(m.nextProbe) {
		return false
	}
	m.probing = true
	return true
}

// latency returns the median and 90th percentile of the recent answer
// times, and whether there are any.
func (m *member) latency() (p50, p90 time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.p50, m.p90, m.nRTT > 0
}

// hedgeDelay is how long an attempt on m with identity id (nil: none) may
// go unanswered before a hedge is sent: the 90th percentile of m's answer
// times, within [lo, hi]; hi while m has none, and while id has had no
// answer from m yet (a new isolation epoch, or every query with per-query
// isolation): its first queries wait for a circuit and a handshake, which
// the answer times of warm attempts do not show, and hedging each of them
// would open one more circuit and connection per query at every epoch's
// start.
func (m *member) hedgeDelay(id *upstream.Identity, lo, hi time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nRTT == 0 || !m.hasWarm || m.warm != credentials(id) {
		return hi
	}
	return min(max(m.p90, lo), hi)
}

// credentials are id's, or none for nil.
func credentials(id *upstream.Identity) egress.Credentials {
	if id == nil {
		return egress.Credentials{}
	}
	return id.Credentials
}

// attemptTimeout is how long one attempt on m may take before the query
// fails over: eight times its 90th percentile, within [lo, hi]; hi while
// it has no answer times.
func (m *member) attemptTimeout(lo, hi time.Duration) time.Duration {
	_, p90, ok := m.latency()
	if !ok {
		return hi
	}
	return min(max(8*p90, lo), hi)
}

// Status is what the status report says of one member.
type Status struct {
	Name, Operator string
	State          string // "starting", "up" or "benched"
	Queries        int64
	Failures       int64
	MedianRTT      time.Duration // 0: no answer yet
	LastError      error         // of the last failure
}

func (m *member) status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Name: m.Name, Operator: m.Operator, State: stateUp, Queries: m.queries.Load(),
		Failures: m.failures.Load(), LastError: m.lastErr}
	switch {
	case m.benched:
		st.State = stateBenched
	case !m.ready.Load():
		st.State = stateStarting
	}
	if m.nRTT > 0 {
		st.MedianRTT = m.p50
	}
	return st
}
