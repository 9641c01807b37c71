package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// udpMux sends encrypted queries to the resolver over a few connected UDP
// sockets and hands each response to the request whose client nonce it
// echoes. Connected sockets only accept datagrams from the resolver's
// address; the nonce (never repeated, 96 random bits) matches the rest.
type udpMux struct {
	conns []*net.UDPConn
	mu    sync.Mutex
	// pending maps a client nonce to the request waiting for it.
	pending map[[dnscrypt.HalfNonceSize]byte]*request
	next    uint32
	wg      sync.WaitGroup
	// deliver completes a fast-path request the reader claimed, with its
	// response; buf is the reader's scratch space.
	deliver func(m *udpMux, r *request, resp []byte, buf *readerBuf)
	// fail takes the requests claimed after their socket failed.
	fail func(rs []*request, err error)
}

// readerBuf is one UDP reader's scratch space for completing requests.
type readerBuf struct{ ans, out []byte }

func newUDPMux(addr string, n int, deliver func(*udpMux, *request, []byte, *readerBuf), fail func([]*request, error)) (*udpMux, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr) // an IP literal: no lookup
	if err != nil {
		return nil, err
	}
	m := &udpMux{pending: make(map[[dnscrypt.HalfNonceSize]byte]*request), deliver: deliver, fail: fail}
	for range n {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			m.close()
			return nil, err
		}
		m.conns = append(m.conns, c)
	}
	for i, c := range m.conns {
		m.wg.Add(1)
		go m.read(i, c)
	}
	return m, nil
}

// close closes the sockets and waits for the readers.
func (m *udpMux) close() {
	for _, c := range m.conns {
		c.Close()
	}
	m.wg.Wait()
}

func (m *udpMux) read(sock int, c *net.UDPConn) {
	defer m.wg.Done()
	buf := make([]byte, 65536)
	rb := &readerBuf{ans: make([]byte, 0, 65536), out: make([]byte, 0, 65536)}
	var failed []*request
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// An ICMP error (port or host unreachable) for one of the
			// datagrams sent on this socket: the kernel does not say
			// which, so every request waiting on it goes on at once
			// (over TCP) instead of waiting out the UDP deadline.
			failed = m.claimSocket(sock, failed[:0])
			m.fail(failed, fmt.Errorf("resolver over UDP: %w", err))
			clear(failed)
			continue
		}
		if n < dnscrypt.ResolverMagicLen+dnscrypt.HalfNonceSize {
			continue
		}
		nonce := [dnscrypt.HalfNonceSize]byte(buf[dnscrypt.ResolverMagicLen:])
		m.mu.Lock()
		r := m.pending[nonce]
		if r != nil && r.state.CompareAndSwap(stateWaiting, stateOwned) {
			delete(m.pending, nonce)
		} else {
			r = nil
		}
		m.mu.Unlock()
		if r != nil {
			m.deliver(m, r, buf[:n], rb)
		}
	}
}

// send registers the fast-path request r, sealed into r.pkt under r.nonce,
// and sends it. On a write error it takes r back and returns the error; if
// r was claimed meanwhile (dropped), it returns errClaimed and r is no
// longer the caller's.
func (m *udpMux) send(r *request) error {
	m.mu.Lock()
	r.state.Store(stateWaiting)
	m.pending[r.nonce] = r
	r.sock = int(m.next % uint32(len(m.conns)))
	c := m.conns[r.sock]
	m.next++
	m.mu.Unlock()
	if _, err := c.Write(r.pkt); err != nil {
		if !m.claim(r) {
			return errClaimed
		}
		return err
	}
	return nil
}

// errClaimed: the request went to another owner.
var errClaimed = errors.New("request claimed by another owner")

// wait puts the fast-path request r back to wait for another response
// with the same nonce, after one that did not open.
func (m *udpMux) wait(r *request) {
	m.mu.Lock()
	r.state.Store(stateWaiting)
	m.pending[r.nonce] = r
	m.mu.Unlock()
}

// claim takes the waiting fast-path request r out of the pending map; it
// reports false if r is not waiting there (another owner has it).
func (m *udpMux) claim(r *request) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The state first: r.nonce is only r's own while it waits.
	if r.state.Load() != stateWaiting || m.pending[r.nonce] != r || !r.state.CompareAndSwap(stateWaiting, stateOwned) {
		return false
	}
	delete(m.pending, r.nonce)
	return true
}

// claimSocket claims the fast-path requests waiting on socket sock.
func (m *udpMux) claimSocket(sock int, out []*request) []*request {
	m.mu.Lock()
	defer m.mu.Unlock()
	for nonce, r := range m.pending {
		if r.sock == sock && r.state.CompareAndSwap(stateWaiting, stateOwned) {
			delete(m.pending, nonce)
			out = append(out, r)
		}
	}
	return out
}

// expired claims the fast-path requests whose UDP attempt ended by now.
func (m *udpMux) expired(now time.Time, out []*request) []*request {
	m.mu.Lock()
	defer m.mu.Unlock()
	for nonce, r := range m.pending {
		if !now.Before(r.udpDeadline) && r.state.CompareAndSwap(stateWaiting, stateOwned) {
			delete(m.pending, nonce)
			out = append(out, r)
		}
	}
	return out
}

// errUDPTimeout ends a UDP attempt that got no response in time.
var errUDPTimeout = errors.New("no response over UDP")

// tcpExchange sends the framed packet (2-byte length, then the encrypted
// query) on a new connection, direct or through SOCKS with id's
// credentials, and reads one framed response into r.resp. DNSCrypt allows
// one transaction per connection.
func (p *Proxy) tcpExchange(ctx context.Context, id *identity, r *request, framed []byte) error {
	if err := p.takeSlot(ctx, !r.noQueue); err != nil {
		return err
	}
	defer p.releaseSlot()
	var c net.Conn
	var err error
	if p.socks != nil {
		c, err = p.socks.dial(ctx, p.cfg.ResolverAddr, id.user, id.pass, framed)
	} else {
		c, err = p.direct.DialContext(ctx, "tcp", p.cfg.ResolverAddr)
		if err == nil {
			if dl, ok := ctx.Deadline(); ok {
				c.SetDeadline(dl)
			}
			_, err = c.Write(framed)
		}
	}
	if err != nil {
		if c != nil {
			c.Close()
		}
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var l [2]byte
	if _, err := readFullAcked(c, l[:]); err != nil {
		return p.ctxErr(ctx, fmt.Errorf("reading response length: %w", err))
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if cap(r.resp) < n {
		r.resp = make([]byte, n)
	}
	r.resp = r.resp[:n]
	if _, err := readFullAcked(c, r.resp); err != nil {
		return p.ctxErr(ctx, fmt.Errorf("reading response: %w", err))
	}
	return nil
}

// takeSlot takes one of the upstream TCP connection slots: at once if one
// is free, or else, if wait, the first one freed before ctx ends.
func (p *Proxy) takeSlot(ctx context.Context, wait bool) error {
	select {
	case p.tcpSlots <- struct{}{}:
	default:
		if !wait {
			return errOverload
		}
		select {
		case p.tcpSlots <- struct{}{}:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errOverload
			}
			return ctx.Err()
		}
	}
	p.upstreamTCP.add(1)
	return nil
}

func (p *Proxy) releaseSlot() {
	p.upstreamTCP.add(-1)
	<-p.tcpSlots
}

// ctxErr prefers the end of ctx over the I/O error it provoked.
func (p *Proxy) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// maxUpstreamTCP is how many TCP connections to the resolver may be open
// at once for a request cap of n: a small fixed share of it.
func maxUpstreamTCP(n int) int { return max(4, min(64, n/8)) }
