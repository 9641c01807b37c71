package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// Limits of the stream upstreams.
const (
	// MaxInFlight bounds the queries in flight on one connection. Beyond
	// it, queries wait in the connection's queue for an answer to free a
	// slot (ErrOverload at their deadline); no second connection is
	// opened.
	MaxInFlight = 1 << slotBits
	slotBits    = 7
	slotMask    = MaxInFlight - 1

	// DefaultIdleTimeout closes a connection without a query in flight
	// after that long, or sooner if the server asks for it with
	// edns-tcp-keepalive (RFC 7828). unbound's default tcp-idle-timeout
	// is 30 s too.
	DefaultIdleTimeout = 30 * time.Second
)

// Stream is the upstream of a resolver reached over a byte stream: plain
// DNS over TCP (KindTCP, RFC 7766) or DNS over TLS (KindTLS, RFC 7858).
//
// Queries of one identity (one set of SOCKS credentials, hence one Tor
// circuit) share one persistent connection, opened at their first query,
// and are pipelined on it: each is sent with a DNS ID unique among those
// in flight on the connection, and its answer, matched by that ID in
// whatever order it comes, gets the client's ID back before Query.Finish.
// Per identity, one goroutine writes (it also dials), and per connection
// one reads and finishes the queries answered: a query costs no goroutine.
// Run must be running: it ends the queries at their deadline and closes
// idle and stalled connections.
//
// Invariants:
//   - At most MaxInFlight queries are in flight per connection; the others
//     wait, in order, in the identity's queue.
//   - A query is in exactly one place at a time, under its session's lock:
//     new, queued, in flight (in a slot of a connection), or owned by the
//     goroutine about to finish it; only the owner finishes it.
//   - A query in flight when its connection dies is sent again once, on a
//     new connection, if its deadline has not passed; otherwise it fails
//     with the connection's error.
//   - A connection with nothing in flight is closed after its idle timeout
//     (DefaultIdleTimeout, or the server's edns-tcp-keepalive TIMEOUT if
//     shorter), and at once when its identity is no longer the newest one
//     (an isolation epoch ended). One on which a query timed out without
//     any answer since it was sent is taken as stalled and closed. After
//     a TIMEOUT of 0 (RFC 7828 section 3.2.2) a connection takes no more
//     queries and closes once those in flight are answered; new queries
//     go on a new connection meanwhile (a retired connection may live on
//     beside the new one until its last answer or deadline).
//
// Queries carry an empty edns-tcp-keepalive option when they have an OPT
// record; over TLS every query also gets an OPT record if it has none and
// is padded to a multiple of 128 bytes (RFC 7830, RFC 8467). Both options
// are removed from the answers. Over TLS, through a proxy, TLS sessions
// are never resumed (a ticket would link connections, hence circuits).
type Stream struct {
	spec  Spec
	opts  Options
	log   *slog.Logger
	kind  Kind
	tls   *tls.Config // nil for plain TCP
	query edns.StreamQuery
	ready chan struct{}
	// idle is the longest a connection stays open without a query in
	// flight (DefaultIdleTimeout; tests shorten it).
	idle time.Duration

	// ctx ends at Close: it stops dials and handshakes.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[egress.Credentials]*session
	closed   bool
	// current is the session of the newest identity: the only one whose
	// connection stays open while idle.
	current atomic.Pointer[session]
	// connSlots bounds the connections open at once (Options.MaxConns).
	connSlots chan struct{}
	// wg counts the writer and reader goroutines. A writer starts under
	// startMu's read lock, unless stopping: Close sets it under the write
	// lock before it waits, so no start races the wait.
	wg       sync.WaitGroup
	startMu  sync.RWMutex
	stopping bool

	// Errors of queries past their deadline: in flight, waiting for a
	// connection, waiting for a slot; and of a connection that could not
	// be opened within Options.MaxConns.
	errTimeout, errNoConn, errOverload, errConns error

	// Conns counts the open connections (now and the most at once); Dials
	// the connections attempted.
	Conns Gauge
	Dials atomic.Int64
}

var _ Upstream = (*Stream)(nil)

// NewStream returns the upstream of spec, of kind KindTCP or KindTLS. New
// calls it after checking spec; call New rather than this.
func NewStream(spec Spec, opts Options) (*Stream, error) {
	opts.withDefaults()
	u := &Stream{
		spec:      spec,
		opts:      opts,
		log:       opts.Logger,
		kind:      spec.Kind,
		ready:     make(chan struct{}),
		idle:      DefaultIdleTimeout,
		sessions:  map[egress.Credentials]*session{},
		connSlots: make(chan struct{}, opts.MaxConns),
		query:     edns.StreamQuery{Keepalive: true},
	}
	switch spec.Kind {
	case KindTCP:
	case KindTLS:
		u.tls = tlsConfig(&spec, opts.Dialer.Proxied(), opts.Now)
		u.query.Block, u.query.NewOPT = edns.QueryPadBlock, true
	default:
		return nil, fmt.Errorf("%w %s: %v is not a stream kind", ErrSpec, spec.String(), spec.Kind)
	}
	u.errTimeout = fmt.Errorf("no answer from %s in time: %w", spec.Addr, context.DeadlineExceeded)
	u.errNoConn = fmt.Errorf("no connection to %s in time: %w", spec.Addr, context.DeadlineExceeded)
	u.errOverload = fmt.Errorf("%w (%d queries in flight to %s)", ErrOverload, MaxInFlight, spec.Addr)
	u.errConns = fmt.Errorf("%w (%d connections open to %s)", ErrOverload, opts.MaxConns, spec.Addr)
	u.ctx, u.cancel = context.WithCancel(context.Background())
	close(u.ready)
	return u, nil
}

func (u *Stream) String() string         { return u.kind.String() + " " + u.spec.Addr }
func (u *Stream) Ready() <-chan struct{} { return u.ready }
func (u *Stream) Stream() bool           { return true }

// Refresh does nothing: a stream upstream holds no certificates to check
// (TLS verifies the server at each connection).
func (u *Stream) Refresh() {}

// Exchange implements Upstream: q joins its identity's queue, and the
// connection's writer sends it.
func (u *Stream) Exchange(q *Query) {
	if len(q.Msg) < 12 {
		q.Finish(nil, fmt.Errorf("%w: query shorter than a DNS header", ErrCorrupt))
		return
	}
	s := u.session(q.Identity)
	if s == nil {
		q.Finish(nil, ErrClosed)
		return
	}
	j := jobPool.Get().(*job)
	j.s, j.q, j.deadline = s, q, q.Deadline
	j.clientID = [2]byte(q.Msg[:2])
	if !q.SetCanceller(j) {
		j.finish(nil, context.Canceled)
		return
	}
	s.mu.Lock()
	var err error
	switch {
	case s.closed:
		err = ErrClosed
	case j.cancelReq:
		err = context.Canceled
	}
	if err != nil {
		j.where = jobOwned
		s.mu.Unlock()
		j.finish(nil, err)
		return
	}
	s.queue.pushBack(j)
	if s.running {
		s.mu.Unlock()
		s.signal()
		return
	}
	u.startMu.RLock()
	if !u.stopping {
		s.running = true
		u.wg.Add(1)
	}
	u.startMu.RUnlock()
	if !s.running { // closed meanwhile
		s.queue.remove(j)
		s.mu.Unlock()
		j.finish(nil, ErrClosed)
		return
	}
	s.mu.Unlock()
	go s.write()
}

// session returns the session of id's credentials, making it if needed,
// and makes it the current one; nil once the upstream is closed. The
// sweeper removes a session sessionGrace after its writer ended (nothing
// left to send or read); one it removes while a late Exchange is about to
// use it still works, on a connection of its own, and Close ends it
// through u.ctx.
func (u *Stream) session(id *Identity) *session {
	var cred egress.Credentials
	if id != nil {
		cred = id.Credentials
	}
	if s := u.current.Load(); s != nil && s.cred == cred {
		return s
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	s := u.sessions[cred]
	if s == nil {
		s = &session{u: u, cred: cred, wake: make(chan struct{}, 1)}
		u.sessions[cred] = s
	}
	u.current.Store(s)
	return s
}

// sessionGrace is how long a session with nothing left stays known.
const sessionGrace = time.Second

// Run closes idle connections and ends the queries past their deadline
// until ctx is done.
func (u *Stream) Run(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	var sw sweep
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			u.sweep(now, &sw)
		}
	}
}

// sweep is the scratch space of one pass of the sweeper.
type sweep struct {
	expired []*job
	errs    []error
	closing []*streamConn
	idle    []*streamConn
	live    []*session
}

// sweep ends the queries past their deadline, closes the connections that
// stalled or idled, and forgets the sessions with nothing left.
func (u *Stream) sweep(now time.Time, sw *sweep) {
	cur := u.current.Load()
	u.mu.Lock()
	sw.live = sw.live[:0]
	for cred, s := range u.sessions {
		s.mu.Lock()
		if s != cur && !s.running && s.conn == nil && len(s.retired) == 0 && s.queue.empty() && now.After(s.until) {
			delete(u.sessions, cred)
		} else {
			sw.live = append(sw.live, s)
		}
		s.mu.Unlock()
	}
	u.mu.Unlock()
	for _, s := range sw.live {
		s.sweep(now, s == cur, sw)
	}
	for i, j := range sw.expired {
		j.finish(nil, sw.errs[i])
	}
	for _, c := range sw.closing {
		c.abort()
	}
	for _, c := range sw.idle {
		c.close()
	}
	clear(sw.expired)
	clear(sw.errs)
	clear(sw.closing)
	clear(sw.idle)
	clear(sw.live)
	sw.expired, sw.errs, sw.closing, sw.idle = sw.expired[:0], sw.errs[:0], sw.closing[:0], sw.idle[:0]
}

// Close closes the connections and fails every query not answered yet
// with ErrClosed, and returns once the upstream's goroutines have ended.
func (u *Stream) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		u.wg.Wait()
		return nil
	}
	u.closed = true
	sessions := make([]*session, 0, len(u.sessions))
	for _, s := range u.sessions {
		sessions = append(sessions, s)
	}
	u.mu.Unlock()
	u.startMu.Lock()
	u.stopping = true
	u.startMu.Unlock()
	u.cancel()
	for _, s := range sessions {
		s.close()
	}
	u.wg.Wait()
	return nil
}

// job is a stream upstream's state of one Query. Jobs are recycled through
// a pool. Every field but the first four is guarded by s.mu.
type job struct {
	s        *session
	q        *Query
	deadline time.Time
	clientID [2]byte

	where     jobPlace
	cancelReq bool // Cancel came while the job was nowhere to claim it from
	retried   bool // sent again after its connection died
	// In flight: the connection, the slot, when it was written.
	c    *streamConn
	slot uint8
	sent time.Time
	// In the queue.
	prev, next *job
}

type jobPlace uint8

const (
	jobOwned    jobPlace = iota // a goroutine holds it (new, or about to finish it)
	jobQueued                   // in its session's queue
	jobInFlight                 // in a slot of a connection
)

var jobPool = sync.Pool{New: func() any { return new(job) }}

// finish ends j's query and recycles j. Only j's owner calls it.
func (j *job) finish(answer []byte, err error) {
	q := j.q
	q.Finish(answer, err)
	*j = job{}
	jobPool.Put(j)
}

// Claim implements Canceller: a queued job leaves its queue, a job in
// flight its slot (a late answer to it is then dropped); a job elsewhere
// is marked, and whoever would queue it finishes it instead.
func (j *job) Claim(*Query) bool {
	s := j.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch j.where {
	case jobQueued:
		s.queue.remove(j)
	case jobInFlight:
		j.c.release(j.slot)
		if !s.queue.empty() {
			s.signal()
		}
	default:
		j.cancelReq = true
		return false
	}
	j.where = jobOwned
	return true
}

// Abandon implements Canceller.
func (j *job) Abandon(*Query) { j.finish(nil, context.Canceled) }

// jobList is a FIFO of jobs linked through their prev and next fields.
type jobList struct{ head, tail *job }

func (l *jobList) empty() bool { return l.head == nil }

func (l *jobList) pushBack(j *job) {
	j.where, j.prev, j.next = jobQueued, l.tail, nil
	if l.tail != nil {
		l.tail.next = j
	} else {
		l.head = j
	}
	l.tail = j
}

func (l *jobList) pushFront(j *job) {
	j.where, j.prev, j.next = jobQueued, nil, l.head
	if l.head != nil {
		l.head.prev = j
	} else {
		l.tail = j
	}
	l.head = j
}

func (l *jobList) remove(j *job) {
	if j.prev != nil {
		j.prev.next = j.next
	} else {
		l.head = j.next
	}
	if j.next != nil {
		j.next.prev = j.prev
	} else {
		l.tail = j.prev
	}
	j.prev, j.next, j.where = nil, nil, jobOwned
}

func (l *jobList) popFront() *job {
	j := l.head
	if j != nil {
		l.remove(j)
	}
	return j
}
