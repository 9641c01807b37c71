package proxy

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

// errEvicted ends a request dropped to make room for a newer one.
var errEvicted = errors.New("dropped: too many active requests")

// request is one client query in flight. Requests and their buffers are
// recycled through a pool, so the steady state allocates little.
type request struct {
	ctx    context.Context
	cancel context.CancelCauseFunc // ends the request with a cause (eviction)
	stop   context.CancelFunc      // releases the deadline's timer

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
	}
}}

// maxPooledBuf keeps the pool from holding on to the rare huge buffers.
const maxPooledBuf = 8192

func getRequest() *request { return requestPool.Get().(*request) }

func putRequest(r *request) {
	if r.cancel != nil {
		r.stop()
		r.cancel(nil)
	}
	select { // a late UDP delivery
	case <-r.udpDone:
	default:
	}
	r.ctx, r.cancel, r.stop, r.conn, r.client = nil, nil, nil, nil, netip.AddrPort{}
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
}

// add inserts r as the newest request and returns the request it evicted,
// if any; the caller cancels that one.
func (s *activeSet) add(r *request) (evicted *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= s.max && s.head != nil {
		evicted = s.head
		s.unlink(evicted)
	}
	r.prev, r.next, r.active = s.tail, nil, true
	if s.tail != nil {
		s.tail.next = r
	} else {
		s.head = r
	}
	s.tail = r
	s.n++
	return evicted
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
