package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

// request is one client query in flight. Requests and their buffers are
// recycled through a pool, so the steady state allocates little.
//
// A UDP query on the fast path (see fastpath.go) has no goroutine of its
// own while it waits for the resolver: it sits in the UDP mux's pending
// map in state stateWaiting, and whoever moves it to stateOwned with a
// compare-and-swap - the upstream reader with the answer, the sweeper at
// its deadline, or eviction and shutdown - finishes it. Every such claim
// happens under the mux lock while the request is still pending, so a
// recycled request can never be claimed for its previous life.
type request struct {
	state   atomic.Int32
	dropped atomic.Bool // evicted, or the proxy is stopping
	evicted atomic.Bool // dropped to admit a newer request: SERVFAIL

	// deadline ends the whole request; ctx carries it on the goroutine
	// path (TCP, SOCKS, fallbacks). ctx is not derived from the serving
	// context: shutdown and eviction go through the active set, which sets
	// dropped and cancels, so no request registers with a shared parent.
	born     time.Time
	deadline time.Time
	ctx      context.Context
	cancel   context.CancelFunc

	meta edns.Query
	// Buffers, reused: the prepared query, the sealed UDP packet, the
	// sealed TCP packet with its length prefix (its own buffer: a fast-path
	// claimant may retry over TCP while the sender still writes pkt), the
	// encrypted response, the decrypted answer and what the client gets.
	q, pkt, tpkt, resp, ans, out []byte

	// The UDP query in flight: its identity and key (a TCP retry uses
	// them too) and its nonce open the answer; udpDeadline ends the UDP
	// attempt; padded is the padded length it was sent with.
	id          *identity
	key         *dnscrypt.SharedKey
	nonce       [dnscrypt.HalfNonceSize]byte
	padded      int
	udpDeadline time.Time
	// noQueue: a TCP retry after the UDP attempt was lost; it takes an
	// upstream TCP slot only if one is free (under overload, a backlog of
	// such retries would hold up the TCP clients).
	noQueue bool
	sock    int // the mux socket it was sent on

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

// Request states.
const (
	stateOwned   = iota // a goroutine works on it (the zero value)
	stateWaiting        // on the fast path, waiting for the resolver
)

var requestPool = sync.Pool{New: func() any {
	return &request{
		q:    make([]byte, 0, 1024),
		pkt:  make([]byte, 0, 2048),
		tpkt: make([]byte, 0, 2048),
		resp: make([]byte, 0, 2048),
		ans:  make([]byte, 0, 2048),
		out:  make([]byte, 0, 2048),
	}
}}

// maxPooledBuf keeps the pool from holding on to the rare huge buffers.
const maxPooledBuf = 8192

func getRequest() *request { return requestPool.Get().(*request) }

func putRequest(r *request) {
	if r.cancel != nil {
		r.cancel()
	}
	r.ctx, r.cancel, r.conn, r.id, r.key = nil, nil, nil, nil, nil
	r.pc, r.uc, r.addr, r.client = nil, nil, nil, netip.AddrPort{}
	r.state.Store(stateOwned)
	r.dropped.Store(false)
	r.evicted.Store(false)
	r.noQueue = false
	r.meta = edns.Query{}
	for _, b := range []*[]byte{&r.q, &r.pkt, &r.tpkt, &r.resp, &r.ans, &r.out} {
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
	var claimed *request
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
		if p.drop(old) {
			claimed = old
		}
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
	if claimed != nil {
		p.complete(claimed, errEvicted)
	}
	return nil
}

// complete ends r with the outcome err of resolving it (nil: the answer is
// in r.ans): the client gets the answer, or SERVFAIL, or nothing while the
// proxy stops (see reply).
func (p *Proxy) complete(r *request, err error) {
	if out, ok := p.reply(r, err); ok {
		r.respond(out)
	}
	p.finish(r)
}

// drop marks r dropped and cancels its work; called under the active
// set's lock, while r is still the request it was. It reports whether it
// claimed a waiting fast-path request, which the caller must then finish.
func (p *Proxy) drop(r *request) bool {
	r.dropped.Store(true)
	if r.cancel != nil {
		r.cancel()
	}
	m := p.udp.Load()
	return m != nil && m.claim(r)
}

// closeActive drops every request in the set, and every one admitted
// later; it finishes the waiting fast-path requests it claims.
func (p *Proxy) closeActive() {
	s := &p.active
	s.mu.Lock()
	s.closed = true
	var claimed []*request
	for s.head != nil {
		r := s.head
		s.unlink(r)
		if p.drop(r) {
			claimed = append(claimed, r)
		}
	}
	s.mu.Unlock()
	for _, r := range claimed {
		p.finish(r)
	}
}

// finish ends r: out of the active set, back to the pool.
func (p *Proxy) finish(r *request) {
	s := &p.active
	s.mu.Lock()
	if r.active {
		s.unlink(r)
	}
	s.mu.Unlock()
	putRequest(r)
	p.wg.Done()
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
