package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// request is one client query in flight. Requests and their buffers are
// recycled through a pool, so the steady state allocates little.
//
// A request is admitted to the active set, then handed to the upstream as
// an upstream.Query (up); the upstream calls its Receive exactly once, and
// Receive completes it: the answer or SERVFAIL to the client, out of the
// active set, back to the pool. Eviction and shutdown cancel up (outside
// the active set's lock): the upstream then calls Receive soon, with
// context.Canceled, and the client gets SERVFAIL (evicted) or nothing
// (shutdown).
type request struct {
	p *Proxy
	// refs: the request's own life, and whoever took it out of the active
	// set to cancel it; it goes back to the pool at zero.
	refs    atomic.Int32
	dropped atomic.Bool // evicted, or the proxy is stopping
	evicted atomic.Bool // dropped to admit a newer request: SERVFAIL

	born     time.Time
	deadline time.Time

	meta edns.Query
	// Buffers, reused: the prepared query, what the client gets, and
	// scratch space for a SERVFAIL.
	q, out, scratch []byte
	// up is the attempt at the upstream.
	up upstream.Query

	// UDP clients: where to answer.
	pc     net.PacketConn
	uc     *net.UDPConn // pc, when it is one (no allocation per write)
	client netip.AddrPort
	addr   net.Addr // for a PacketConn that is not a *net.UDPConn
	// TCP clients.
	conn *clientConn

	// The active set: a list ordered by age, oldest first.
	prev, next *request
	active     bool
}

var requestPool = sync.Pool{New: func() any {
	return &request{
		q:       make([]byte, 0, 1024),
		out:     make([]byte, 0, 2048),
		scratch: make([]byte, 0, 512),
	}
}}

// maxPooledBuf keeps the pool from holding on to the rare huge buffers.
const maxPooledBuf = 8192

func (p *Proxy) getRequest() *request {
	r := requestPool.Get().(*request)
	r.p = p
	r.up.Done = r
	r.refs.Store(1)
	return r
}

// release drops a reference to r; the last one recycles it.
func (r *request) release() {
	if r.refs.Add(-1) == 0 {
		putRequest(r)
	}
}

func putRequest(r *request) {
	r.up.Reset()
	r.up.Msg, r.up.Identity = nil, nil
	r.p, r.conn = nil, nil
	r.pc, r.uc, r.addr, r.client = nil, nil, nil, netip.AddrPort{}
	r.dropped.Store(false)
	r.evicted.Store(false)
	r.meta = edns.Query{}
	for _, b := range []*[]byte{&r.q, &r.out, &r.scratch} {
		if cap(*b) > maxPooledBuf {
			*b = make([]byte, 0, 2048)
		}
		*b = (*b)[:0]
	}
	requestPool.Put(r)
}

// writeUDP sends b to r's UDP client.
func (r *request) writeUDP(b []byte) { writeUDP(r.pc, r.uc, b, r.client, r.addr) }

// silenced reports whether r's client gets no answer at all: the proxy is
// stopping. An evicted request is dropped too, but its client gets
// SERVFAIL.
func (r *request) silenced() bool { return r.dropped.Load() && !r.evicted.Load() }

// Receive implements upstream.Receiver: the upstream's outcome completes r.
func (r *request) Receive(q *upstream.Query, answer []byte, err error) {
	p := r.p
	if err == nil {
		p.observeRTT(time.Since(r.born))
		if q.OverTCP && truncated(answer) {
			p.failLog.report(time.Now(), noteTruncatedTCP, fmt.Errorf("%w; the query advertised %s", errTruncatedTCP, ednsSizeOf(q.Msg)))
		}
	}
	p.complete(r, answer, err)
}

func truncated(msg []byte) bool { return len(msg) > 2 && msg[2]&0x02 != 0 }

// ednsSizeOf describes the EDNS payload size of the query q, for the log.
func ednsSizeOf(q []byte) string {
	m := new(dns.Msg)
	if m.Unpack(q) != nil {
		return "an unknown EDNS size"
	}
	if opt := m.IsEdns0(); opt != nil {
		return fmt.Sprintf("EDNS size %d", opt.UDPSize())
	}
	return "no EDNS (512 bytes)"
}

// activeSet tracks requests in flight and caps their number. When the set
// is full, a new request evicts the oldest if that one is stale (older than
// staleAge: a few times the usual answer time, so its query or answer was
// most likely lost, or its upstream is stalled or dead; dnscrypt-proxy 1.x
// evicted the oldest, so that an outage never wedges the proxy); otherwise
// the set holds requests that are still likely to be answered, and the new
// one is shed. Either
// way the client that loses gets SERVFAIL at once. Shedding the newest
// under plain overload keeps the answers flowing at the resolver's rate:
// evicting young requests instead would let closed-loop clients churn the
// set faster than any answer comes back.
type activeSet struct {
	mu         sync.Mutex
	max, n     int
	head, tail *request
	closed     bool
}

// staleAge is the age from which a request in flight counts as lost: four
// times the moving average of answer times, at least 100 ms, and at most
// the UDP wait (before the first answer: the UDP wait).
func (p *Proxy) staleAge() time.Duration {
	rtt := time.Duration(p.rtt.Load())
	if rtt == 0 {
		return p.udpWait
	}
	return min(max(4*rtt, 100*time.Millisecond), p.udpWait)
}

// observeRTT adds the time an answered request took to the moving average
// (weight 1/8; concurrent updates may overwrite each other, which only
// loses a sample).
func (p *Proxy) observeRTT(d time.Duration) {
	old := p.rtt.Load()
	if old == 0 {
		p.rtt.Store(int64(d))
		return
	}
	p.rtt.Store(old + (int64(d)-old)/8)
}

// admit registers r as active, making room in a full set by evicting the
// oldest request if it is stale, or else shedding r (see activeSet). It
// returns nil if r is admitted; otherwise the caller completes r with the
// error returned: errShed (SERVFAIL) or errStopping (no answer).
func (p *Proxy) admit(r *request) error {
	now := time.Now()
	r.born, r.deadline = now, now.Add(p.cfg.Timeout)
	p.wg.Add(1)
	s := &p.active
	s.mu.Lock()
	var evicted *request
	if s.closed {
		r.dropped.Store(true)
		s.mu.Unlock()
		return errStopping
	}
	if s.n >= s.max && s.head != nil {
		old := s.head
		if now.Sub(old.born) < p.staleAge() {
			// Fresh requests only. A TCP client (one query per
			// connection it set up, unlike a UDP flood) takes the place
			// of the oldest UDP request, if there is one.
			old = nil
			if r.conn != nil {
				for x := s.head; x != nil; x = x.next {
					if x.conn == nil {
						old = x
						break
					}
				}
			}
		}
		if old == nil {
			s.mu.Unlock()
			p.sheds.Add(1)
			return errShed
		}
		s.unlink(old)
		old.evicted.Store(true)
		p.drop(old)
		evicted = old
		p.evictions.Add(1)
	}
	{
		r.prev, r.next, r.active = s.tail, nil, true
		if s.tail != nil {
			s.tail.next = r
		} else {
			s.head = r
		}
		s.tail = r
		s.n++
	}
	s.mu.Unlock()
	if evicted != nil {
		evicted.up.Cancel()
		evicted.release()
	}
	return nil
}

// complete ends r with the upstream's answer, or the error err: the
// client gets the answer, or SERVFAIL, or nothing while the proxy stops
// (see reply).
//
// r leaves the active set before its client hears the answer: a client
// that asks again at once finds r's slot free.
func (p *Proxy) complete(r *request, answer []byte, err error) {
	out, ok := p.reply(r, answer, err)
	s := &p.active
	s.mu.Lock()
	if r.active {
		s.unlink(r)
	}
	s.mu.Unlock()
	if ok {
		r.respond(out)
	}
	if cc := r.conn; cc != nil {
		p.conns.idle(cc, time.Now())
		cc.inflight.Done()
	}
	p.wg.Done()
	r.release() // back to the pool, once nobody holds it to cancel it
}

// exchange hands the admitted request r to the upstream, with the
// identity of its query. r may be complete (and recycled) when it returns.
func (p *Proxy) exchange(r *request) {
	id, err := p.ids.get()
	if err != nil {
		p.complete(r, nil, err)
		return
	}
	q := &r.up
	q.Msg, q.Limit, q.TCP, q.Deadline, q.Identity = r.q, r.meta.Limit, r.conn != nil, r.deadline, id
	p.up.Exchange(q)
}

// drop marks r dropped and takes a reference to it; called under the
// active set's lock, while r is still the request it was. The caller then
// cancels r.up outside the lock (the upstream may complete r at once), and
// releases r.
func (p *Proxy) drop(r *request) {
	r.dropped.Store(true)
	r.refs.Add(1)
}

// closeActive drops every request in the set, and every one admitted
// later, and cancels their attempts upstream.
func (p *Proxy) closeActive() {
	s := &p.active
	s.mu.Lock()
	s.closed = true
	var dropped []*request
	for s.head != nil {
		r := s.head
		s.unlink(r)
		p.drop(r)
		dropped = append(dropped, r)
	}
	s.mu.Unlock()
	for _, r := range dropped {
		r.up.Cancel()
		r.release()
	}
}

func (s *activeSet) unlink(r *request) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		s.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		s.tail = r.prev
	}
	r.prev, r.next, r.active = nil, nil, false
	s.n--
}

// oldestAge returns the age of the oldest request in flight, 0 if none.
func (s *activeSet) oldestAge() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head == nil {
		return 0
	}
	return time.Since(s.head.born)
}

// len returns the number of requests in flight.
func (s *activeSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
