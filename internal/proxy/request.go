package proxy

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

// request is one client query in flight. Requests and their buffers are
// recycled through a pool, so the steady state allocates little.
type request struct {
	// ctx carries the request's deadline. It is not derived from the
	// serving context: shutdown and eviction go through the active set,
	// which sets dropped and cancels, so no request registers with a
	// shared parent.
	ctx     context.Context
	cancel  context.CancelFunc
	dropped atomic.Bool // evicted, or the proxy is stopping: no answer
	// wait bounds the UDP attempt; reused across requests.
	wait *time.Timer

	meta edns.Query
	// Buffers, reused: the prepared query, the sealed packet (with two
	// bytes of room in front for the TCP length), the encrypted response,
	// the decrypted answer and what the client gets.
	q, pkt, resp, ans, out []byte

	// UDP clients.
	client netip.AddrPort
	// TCP clients.
	conn *clientConn

	// udpDone signals that the upstream UDP reader filled resp.
	udpDone chan struct{}

	// The active set: a list ordered by age, oldest first.
	prev, next *request
	active     bool
}

var requestPool = sync.Pool{New: func() any {
	return &request{
		q:       make([]byte, 0, 1024),
		pkt:     make([]byte, 0, 2048),
		resp:    make([]byte, 0, 2048),
		ans:     make([]byte, 0, 2048),
		out:     make([]byte, 0, 2048),
		udpDone: make(chan struct{}, 1),
		wait:    stoppedTimer(),
	}
}}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// maxPooledBuf keeps the pool from holding on to the rare huge buffers.
const maxPooledBuf = 8192

func getRequest() *request { return requestPool.Get().(*request) }

func putRequest(r *request) {
	if r.cancel != nil {
		r.cancel()
	}
	select { // a late UDP delivery
	case <-r.udpDone:
	default:
	}
	r.ctx, r.cancel, r.conn, r.client = nil, nil, nil, netip.AddrPort{}
	r.dropped.Store(false)
	r.meta = edns.Query{}
	for _, b := range []*[]byte{&r.q, &r.pkt, &r.resp, &r.ans, &r.out} {
		if cap(*b) > maxPooledBuf {
			*b = make([]byte, 0, 2048)
		}
		*b = (*b)[:0]
	}
	requestPool.Put(r)
}

// activeSet tracks requests in flight and caps their number: adding one to
// a full set drops the oldest (dnscrypt-proxy 1.x), so a burst or an
// upstream outage never wedges the proxy.
type activeSet struct {
	mu         sync.Mutex
	max, n     int
	head, tail *request
	closed     bool
}

// add inserts r as the newest request. When the set is full it drops the
// oldest request and returns it; after close it drops r itself.
func (s *activeSet) add(r *request) (dropped *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		drop(r)
		return nil
	}
	if s.n >= s.max && s.head != nil {
		dropped = s.head
		s.unlink(dropped)
		drop(dropped)
	}
	r.prev, r.next, r.active = s.tail, nil, true
	if s.tail != nil {
		s.tail.next = r
	} else {
		s.head = r
	}
	s.tail = r
	s.n++
	return dropped
}

// close drops every request in the set, and every request added later.
func (s *activeSet) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for s.head != nil {
		r := s.head
		s.unlink(r)
		drop(r)
	}
}

// drop ends r without an answer.
func drop(r *request) {
	r.dropped.Store(true)
	r.cancel()
}

// remove takes r out of the set if it is still there.
func (s *activeSet) remove(r *request) {
	s.mu.Lock()
	if r.active {
		s.unlink(r)
	}
	s.mu.Unlock()
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

// len returns the number of requests in flight.
func (s *activeSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
