package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// session is a Stream's state for one identity (one set of SOCKS
// credentials): the queue of queries waiting to be sent, the one
// connection that takes them, and the retired connections that still
// carry queries sent earlier or are closing. Its writer goroutine runs
// while it has a connection or a query waiting; it dials, and writes the
// queued queries in batches.
type session struct {
	u    *Stream
	cred egress.Credentials
	wake chan struct{} // one token: something for the writer to look at

	mu    sync.Mutex
	queue jobList
	conn  *streamConn // nil: none (the writer dials at the next query)
	// retired are connections that take no more queries but still have
	// some in flight, or are closing.
	retired []*streamConn
	running bool      // the writer goroutine runs
	closed  bool      // the Stream was closed
	until   time.Time // when the sweeper may forget it (writer ended)
}

// signal wakes the writer.
func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writerAction is what the writer does next.
type writerAction uint8

const (
	writerExit writerAction = iota
	writerWait
	writerDial
	writerSend
)

// next decides the writer's next step; s.mu is held.
func (s *session) next() writerAction {
	c := s.conn
	switch {
	case s.closed || s.u.ctx.Err() != nil:
		return writerExit
	case c == nil && s.queue.empty():
		return writerExit
	case c == nil:
		return writerDial
	case c.nfree > 0 && !s.queue.empty():
		return writerSend
	}
	return writerWait
}

// write is the session's writer goroutine: it dials when queries wait
// and there is no connection, and sends the queued queries as slots free
// up, until the session has neither.
func (s *session) write() {
	u := s.u
	defer u.wg.Done()
	var buf []byte
	for {
		s.mu.Lock()
		switch s.next() {
		case writerExit:
			s.running = false
			s.until = time.Now().Add(sessionGrace)
			var jobs []*job // only once closed
			for j := s.queue.popFront(); j != nil; j = s.queue.popFront() {
				jobs = append(jobs, j)
			}
			s.mu.Unlock()
			for _, j := range jobs {
				j.finish(nil, ErrClosed)
			}
			return
		case writerWait:
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-u.ctx.Done():
			}
		case writerDial:
			c := newStreamConn(s)
			s.conn = c
			var payload []byte
			if u.tls == nil {
				// Plain TCP: the first queries go with the connection
				// (optimistic data through a SOCKS proxy that takes it).
				buf = c.assign(buf[:0], time.Now())
				payload = buf
			}
			s.mu.Unlock()
			s.dial(c, payload)
		case writerSend:
			c := s.conn
			buf = c.assign(buf[:0], time.Now())
			s.mu.Unlock()
			if err := c.send(buf); err != nil {
				c.abort() // the reader fails or retries what is in flight
			}
		}
		if cap(buf) > 1<<16 {
			buf = nil
		}
	}
}

// dial connects c (with the queries in its slots as the first payload),
// and starts its reader; or fails c's queries and those waiting.
func (s *session) dial(c *streamConn, payload []byte) {
	u := s.u
	ctx, cancel := context.WithTimeout(u.ctx, u.opts.Timeout)
	l, err := u.connect(ctx, s.cred, payload)
	cancel()
	s.mu.Lock()
	if err == nil && s.closed {
		l.raw.Close()
		u.releaseConn()
		err = ErrClosed
	}
	if err != nil {
		if s.closed || u.ctx.Err() != nil {
			err = ErrClosed
		}
		s.conn = nil
		failed := c.takeAll(nil)
		for j := s.queue.popFront(); j != nil; j = s.queue.popFront() {
			failed = append(failed, j)
		}
		s.mu.Unlock()
		u.log.Debug("Unable to connect to the resolver", "resolver", u.String(), "err", err)
		for _, j := range failed {
			j.finish(nil, err)
		}
		return
	}
	u.log.Debug("Connected to the resolver", "resolver", u.String(), "route", u.opts.Dialer.String(),
		"connections", u.Conns.Now())
	c.link = l
	c.lastActive = time.Now()
	c.stop = context.AfterFunc(u.ctx, func() { l.raw.Close() })
	u.wg.Add(1)
	s.mu.Unlock()
	go c.read()
}

// link is an open connection: nc to use, raw the TCP connection under
// it, and for DoT, batch between the two.
type link struct {
	nc, raw net.Conn
	batch   *recordBatcher
}

// connect takes a connection slot and opens a connection with cred,
// writing payload first, and makes the TLS handshake for DoT.
func (u *Stream) connect(ctx context.Context, cred egress.Credentials, payload []byte) (link, error) {
	select {
	case u.connSlots <- struct{}{}:
	default:
		select {
		case u.connSlots <- struct{}{}:
		case <-ctx.Done():
			return link{}, u.errConns
		}
	}
	u.Conns.Add(1)
	u.Dials.Add(1)
	raw, err := u.opts.Dialer.DialTCP(ctx, u.spec.Addr, cred, payload)
	if err != nil {
		u.releaseConn()
		return link{}, fmt.Errorf("connecting to %s: %w", u.spec.Addr, ctxErr(ctx, err))
	}
	l := link{nc: raw, raw: raw}
	if u.tls != nil {
		l.batch = &recordBatcher{Conn: raw}
		tc := tls.Client(l.batch, u.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			u.releaseConn()
			return link{}, fmt.Errorf("TLS handshake with %s: %w", u.spec.Addr, ctxErr(ctx, err))
		}
		l.nc = tc
	}
	raw.SetDeadline(time.Time{}) // the Dialer leaves ctx's deadline set
	return l, nil
}

// recordBatcher sits between a tls.Conn and its TCP connection: while on,
// it collects what TLS writes, and flush sends it in one write. The writer
// turns it on to send a batch of queries in one TLS record each, but one
// system call. Every write to the TCP connection happens under mu, so that
// TLS records (a KeyUpdate from the reader's goroutine, a close_notify)
// reach it in the order TLS made them.
type recordBatcher struct {
	net.Conn
	mu  sync.Mutex
	on  bool
	buf []byte
}

func (b *recordBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *recordBatcher) start() {
	b.mu.Lock()
	b.on = true
	b.mu.Unlock()
}

// flush sends what was collected since start, and turns collecting off.
func (b *recordBatcher) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = false
	_, err := b.Conn.Write(b.buf)
	if cap(b.buf) > 1<<16 {
		b.buf = nil
	}
	b.buf = b.buf[:0]
	return err
}

// send writes buf, length-prefixed queries. Over TLS each goes in a TLS
// record of its own, all in one write to the socket: dnsdist 1.7 answers
// only the first query of a record that holds several small ones (the
// rest stays in its TLS buffer until more bytes arrive), and the records
// then show nothing but padded query sizes.
func (c *streamConn) send(buf []byte) error {
	if c.batch == nil {
		_, err := c.nc.Write(buf)
		return err
	}
	c.batch.start()
	for p := 0; p < len(buf); {
		n := 2 + int(binary.BigEndian.Uint16(buf[p:]))
		if _, err := c.nc.Write(buf[p : p+n]); err != nil {
			c.batch.flush()
			return err
		}
		p += n
	}
	return c.batch.flush()
}

func (u *Stream) releaseConn() {
	u.Conns.Add(-1)
	<-u.connSlots
}

// tlsConfig is the TLS client configuration of a DoT spec: SNI the
// server name without the port a stamp's host name may carry; see
// clientTLSConfig for the pins and session resumption.
func tlsConfig(spec *Spec, proxied bool, now func() time.Time) *tls.Config {
	name := spec.ServerName
	if host, _, err := net.SplitHostPort(name); err == nil {
		name = host
	}
	return clientTLSConfig(name, spec.Pins, proxied, nil, now)
}

// streamConn is one connection of a session, and its slots: the queries
// in flight on it, each under a wire ID whose low slotBits bits are the
// slot's index and whose high bits are the slot's generation, bumped at
// each release (a late answer to a canceled or timed-out query does not
// match the slot's next query). Its fields are guarded by s.mu but for the
// reader's.
type streamConn struct {
	s    *session
	link             // nc nil while dialing
	stop func() bool // unregisters the close at the Stream's Close

	// draining: retired (idle, its identity is old, the server sent a
	// keepalive TIMEOUT of 0, it stalled); it takes no more queries, and
	// closes once none is in flight.
	draining   bool
	slots      [MaxInFlight]slot
	free       [MaxInFlight]uint8 // stack of the free slots' indexes
	nfree      int
	idle       time.Duration // idle timeout: ours, or the server's if shorter
	lastRead   time.Time     // last answer (any frame) read
	lastActive time.Time     // last write or read

	// The reader's.
	br   *bufio.Reader
	rbuf []byte
	lenb [2]byte
}

type slot struct {
	j   *job
	id  uint16 // j's wire ID
	gen uint16 // generation of the slot's next use
}

func newStreamConn(s *session) *streamConn {
	c := &streamConn{s: s, nfree: MaxInFlight, idle: s.u.idle}
	for i := range MaxInFlight {
		c.free[i] = uint8(MaxInFlight - 1 - i) // slot 0 first
		c.slots[i].gen = uint16(rand.Uint32())
	}
	return c
}

// assign moves queued queries into free slots, appends them to buf, each
// with its 2-byte length, its wire ID and its stream options, and returns
// buf. s.mu is held.
func (c *streamConn) assign(buf []byte, now time.Time) []byte {
	s := c.s
	for c.nfree > 0 {
		j := s.queue.popFront()
		if j == nil {
			break
		}
		c.nfree--
		i := c.free[c.nfree]
		sl := &c.slots[i]
		sl.j, sl.id = j, sl.gen<<slotBits|uint16(i)
		j.where, j.c, j.slot, j.sent = jobInFlight, c, i, now
		start := len(buf)
		buf = append(buf, 0, 0)
		buf, _ = edns.AppendStreamQuery(buf, j.q.Msg, s.u.query)
		binary.BigEndian.PutUint16(buf[start:], uint16(len(buf)-start-2))
		binary.BigEndian.PutUint16(buf[start+2:], sl.id)
	}
	c.lastActive = now
	return buf
}

// release frees slot i. s.mu is held.
func (c *streamConn) release(i uint8) {
	sl := &c.slots[i]
	sl.j = nil
	sl.gen++
	c.free[c.nfree] = i
	c.nfree++
}

// takeAll empties c's slots, appends their jobs, now owned, to dst and
// returns it. s.mu is held.
func (c *streamConn) takeAll(dst []*job) []*job {
	for i := range c.slots {
		if j := c.slots[i].j; j != nil {
			c.release(uint8(i))
			j.where = jobOwned
			dst = append(dst, j)
		}
	}
	return dst
}

// close ends c gracefully: its reader wakes up, sees c draining, and
// closes it (over TLS with a close_notify). s.mu is held or not; c is
// marked draining.
func (c *streamConn) close() { c.raw.SetReadDeadline(time.Unix(1, 0)) }

// abort closes c's TCP connection at once.
func (c *streamConn) abort() { c.raw.Close() }

// read is c's reader goroutine: it finishes the queries answered, until
// the connection ends.
func (c *streamConn) read() {
	defer c.s.u.wg.Done()
	c.br = bufio.NewReaderSize(c.nc, 8192)
	c.rbuf = make([]byte, 0, 4096)
	for {
		msg, err := c.readFrame()
		if err != nil {
			c.s.died(c, err)
			return
		}
		c.deliver(msg)
	}
}

// readFrame reads one length-prefixed DNS message (RFC 1035 section
// 4.2.2) into c.rbuf. A message shorter than a DNS header breaks the
// framing: ErrCorrupt.
func (c *streamConn) readFrame() ([]byte, error) {
	if _, err := io.ReadFull(c.br, c.lenb[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(c.lenb[:]))
	if n < 12 {
		return nil, fmt.Errorf("%w: a %d-byte message", ErrCorrupt, n)
	}
	if cap(c.rbuf) < n {
		c.rbuf = make([]byte, n)
	}
	b := c.rbuf[:n]
	if _, err := io.ReadFull(c.br, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// deliver hands the answer msg to the query in flight under its ID, if
// any (else it is dropped: a late answer to a query that timed out or was
// canceled), with the client's ID and without the stream options.
func (c *streamConn) deliver(msg []byte) {
	s := c.s
	u := s.u
	msg, keepalive, hasKeepalive := edns.StripStreamOptions(msg)
	id := binary.BigEndian.Uint16(msg)
	now := time.Now()
	s.mu.Lock()
	c.lastRead, c.lastActive = now, now
	if hasKeepalive {
		// RFC 7828 section 3.2.2: after a TIMEOUT of 0, no more queries
		// on this connection (the next ones go on a new one); close it
		// once those in flight are answered.
		c.idle = min(u.idle, keepalive)
		if keepalive == 0 {
			s.retire(c)
		}
	}
	sl := &c.slots[id&slotMask]
	j := sl.j
	if j == nil || sl.id != id {
		s.mu.Unlock()
		return
	}
	c.release(uint8(id & slotMask))
	j.where = jobOwned
	wake := !s.queue.empty()
	done := c.nfree == MaxInFlight && (c.draining || !wake && s != u.current.Load())
	if done {
		s.retire(c)
	}
	s.mu.Unlock()
	msg[0], msg[1] = j.clientID[0], j.clientID[1]
	j.q.OverTCP = true
	j.finish(msg, nil)
	if wake {
		s.signal()
	}
	if done {
		c.close()
	}
}

// died takes c out of its session after err ended it: each query in
// flight on it is queued again, at the front, if it was not already, and
// its deadline allows; the others fail.
func (s *session) died(c *streamConn, err error) {
	u := s.u
	now := time.Now()
	s.mu.Lock()
	draining := c.draining
	c.draining = true
	if s.conn == c {
		s.conn = nil
	}
	if i := slices.Index(s.retired, c); i >= 0 {
		s.retired = slices.Delete(s.retired, i, i+1)
	}
	closed := s.closed || u.ctx.Err() != nil
	jobs := c.takeAll(nil)
	var failed []*job
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		if closed || j.retried || j.cancelReq || !now.Before(j.deadline) {
			failed = append(failed, j)
			continue
		}
		j.retried = true
		s.queue.pushFront(j)
	}
	s.mu.Unlock()
	c.stop()
	if draining && !closed {
		c.nc.Close() // over TLS, with a close_notify
	} else {
		c.raw.Close()
	}
	u.releaseConn()
	if len(jobs) > 0 || !draining {
		u.log.Debug("Connection to the resolver closed", "resolver", u.String(),
			"in_flight", len(jobs), "retried", len(jobs)-len(failed), "err", err)
	}
	for _, j := range failed {
		var e error
		switch {
		case closed:
			e = ErrClosed
		case j.cancelReq:
			e = context.Canceled
		case !now.Before(j.deadline):
			e = u.errTimeout
		default:
			e = fmt.Errorf("connection to %s lost with the query in flight, twice: %w", u.spec.Addr, streamErr(err))
		}
		j.finish(nil, e)
	}
	s.signal() // the writer redials for the queries queued again, or ends
}

// streamErr names the end of a connection.
func streamErr(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("closed by the resolver: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// sweep ends s's queries past their deadline, and closes its connections
// that stalled (a query timed out without any answer read since it was
// sent) or idle (nothing in flight, and retired, or nothing waiting either
// for longer than the idle timeout, or at all when s is not the current
// session). s.mu is taken.
func (s *session) sweep(now time.Time, current bool, sw *sweep) {
	u := s.u
	s.mu.Lock()
	defer s.mu.Unlock()
	queueErr := u.errNoConn // waiting for a connection
	if c := s.conn; c != nil && c.nc != nil {
		queueErr = u.errOverload // waiting for a slot
	}
	for j := s.queue.head; j != nil; {
		next := j.next
		if !now.Before(j.deadline) {
			s.queue.remove(j)
			sw.expired = append(sw.expired, j)
			sw.errs = append(sw.errs, queueErr)
		}
		j = next
	}
	if s.conn != nil {
		s.sweepConn(s.conn, now, current, sw)
	}
	for _, c := range s.retired {
		s.sweepConn(c, now, current, sw)
	}
}

// sweepConn is sweep for the connection c. s.mu is held.
func (s *session) sweepConn(c *streamConn, now time.Time, current bool, sw *sweep) {
	stalled := false
	for i := range c.slots {
		j := c.slots[i].j
		if j == nil || now.Before(j.deadline) {
			continue
		}
		if !c.lastRead.After(j.sent) {
			stalled = true
		}
		c.release(uint8(i))
		j.where = jobOwned
		sw.expired = append(sw.expired, j)
		sw.errs = append(sw.errs, s.u.errTimeout)
	}
	if c.nc == nil {
		return // dialing
	}
	switch {
	case stalled:
		s.retire(c)
		sw.closing = append(sw.closing, c)
	case c.nfree == MaxInFlight && (c.draining || s.queue.empty() && (!current || now.Sub(c.lastActive) >= c.idle)):
		s.retire(c)
		sw.idle = append(sw.idle, c)
	}
}

// retire makes c take no more queries: the next ones go on a new
// connection, while c closes once none is in flight on it. s.mu is held.
func (s *session) retire(c *streamConn) {
	c.draining = true
	if s.conn == c {
		s.conn = nil
		s.retired = append(s.retired, c)
	}
}

// close fails s's waiting queries with ErrClosed and closes its
// connection; its reader fails those in flight.
func (s *session) close() {
	s.mu.Lock()
	s.closed = true
	var jobs []*job
	for j := s.queue.popFront(); j != nil; j = s.queue.popFront() {
		jobs = append(jobs, j)
	}
	var raws []net.Conn
	for _, c := range slices.Concat(s.retired, []*streamConn{s.conn}) {
		if c != nil && c.raw != nil {
			raws = append(raws, c.raw)
		}
	}
	s.mu.Unlock()
	for _, raw := range raws {
		raw.Close()
	}
	for _, j := range jobs {
		j.finish(nil, ErrClosed)
	}
	s.signal()
}
