package proxy

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Inbound TCP connections, after RFC 7766 section 6.2.3 and what unbound and
// dnsdist do: a connection without a query in flight is idle; idle
// connections time out, sooner when the listener is under pressure; and
// when the cap is reached, the connection idle the longest is closed to
// admit a new one. A new client is refused only while every connection has
// a query in flight, so no client can lock the others out of TCP by
// holding connections open.
const (
	// tcpIdleTimeout closes an idle inbound TCP connection.
	tcpIdleTimeout = 10 * time.Second
	// tcpPressureIdle is the idle timeout once half the cap is in use.
	tcpPressureIdle = 2 * time.Second
	// tcpWriteTimeout bounds writing one answer to a TCP client.
	tcpWriteTimeout = 5 * time.Second
)

// clientConn is an inbound TCP connection: queries are read in order and
// answered as they complete, matched by ID (pipelining, RFC 7766).
type clientConn struct {
	c        net.Conn
	mu       sync.Mutex // serialises answers
	inflight sync.WaitGroup
	broken   atomic.Bool

	// Under the connSet's lock.
	pending    int       // queries in flight
	lastActive time.Time // when the last query arrived or was answered
	prev, next *clientConn
	listed     bool
}

func (cc *clientConn) write(b []byte) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.broken.Load() {
		return
	}
	cc.c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(b)))
	if _, err := (&net.Buffers{l[:], b}).WriteTo(cc.c); err != nil {
		cc.broken.Store(true)
		cc.c.Close()
	}
}

// connSet holds the open inbound TCP connections, least recently active
// first.
type connSet struct {
	mu         sync.Mutex
	max        int
	n          atomic.Int64 // read without the lock by tests
	head, tail *clientConn
	// atCap is set when the cap is hit, for one log line per episode; it
	// clears once fewer than half the slots are in use.
	atCap bool
}

// admit adds cc, making room if the set is full by closing the connection
// idle the longest; under pressure it also closes those idle for longer
// than tcpPressureIdle. It reports whether cc was admitted (false: every
// connection has a query in flight) and whether the cap was just hit.
func (s *connSet) admit(cc *clientConn, now time.Time) (admitted, capHit bool) {
	var closing []*clientConn
	s.mu.Lock()
	if int(s.n.Load()) >= s.max/2 {
		cutoff := now.Add(-tcpPressureIdle)
		for x := s.head; x != nil && x.lastActive.Before(cutoff); {
			next := x.next
			if x.pending == 0 {
				s.unlink(x)
				closing = append(closing, x)
			}
			x = next
		}
	}
	if int(s.n.Load()) >= s.max {
		if !s.atCap {
			s.atCap, capHit = true, true
		}
		for x := s.head; x != nil; x = x.next {
			if x.pending == 0 {
				s.unlink(x)
				closing = append(closing, x)
				break
			}
		}
	}
	if admitted = int(s.n.Load()) < s.max; admitted {
		cc.lastActive = now
		s.push(cc)
	}
	s.mu.Unlock()
	for _, x := range closing {
		x.c.Close()
	}
	return admitted, capHit
}

// idleTimeout is how long a connection may stay idle now.
func (s *connSet) idleTimeout() time.Duration {
	if int(s.n.Load()) >= s.max/2 {
		return tcpPressureIdle
	}
	return tcpIdleTimeout
}

// busy counts a query read on cc; it reports false if cc was closed to
// make room meanwhile.
func (s *connSet) busy(cc *clientConn, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !cc.listed {
		return false
	}
	cc.pending++
	s.touch(cc, now)
	return true
}

// idle counts an answered query of cc.
func (s *connSet) idle(cc *clientConn, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cc.pending--
	if cc.listed {
		s.touch(cc, now)
	}
}

// pendingOn reports whether cc has queries in flight.
func (s *connSet) pendingOn(cc *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cc.pending > 0
}

// remove takes cc out of the set, if it is still there.
func (s *connSet) remove(cc *clientConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cc.listed {
		s.unlink(cc)
	}
}

// touch moves cc to the end: the most recently active.
func (s *connSet) touch(cc *clientConn, now time.Time) {
	cc.lastActive = now
	if s.tail != cc {
		s.unlink(cc)
		s.push(cc)
	}
}

func (s *connSet) push(cc *clientConn) {
	cc.prev, cc.next, cc.listed = s.tail, nil, true
	if s.tail != nil {
		s.tail.next = cc
	} else {
		s.head = cc
	}
	s.tail = cc
	s.n.Add(1)
}

func (s *connSet) unlink(cc *clientConn) {
	if cc.prev != nil {
		cc.prev.next = cc.next
	} else {
		s.head = cc.next
	}
	if cc.next != nil {
		cc.next.prev = cc.prev
	} else {
		s.tail = cc.prev
	}
	cc.prev, cc.next, cc.listed = nil, nil, false
	if int(s.n.Add(-1)) < s.max/2 {
		s.atCap = false
	}
}
