package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

const (
	// tcpIdleTimeout closes an inbound TCP connection without queries.
	tcpIdleTimeout = 10 * time.Second
	// tcpWriteTimeout bounds writing one answer to a TCP client.
	tcpWriteTimeout = 5 * time.Second
	// acceptPause follows an accept error (1.x: 1 s).
	acceptPause = time.Second
)

// serveUDP reads client datagrams until pc is closed.
func (p *Proxy) serveUDP(ctx context.Context, pc net.PacketConn) {
	defer p.wg.Done()
	uc, _ := pc.(*net.UDPConn)
	buf := make([]byte, 65536)
	var scratch []byte
	for {
		var n int
		var from netip.AddrPort
		var addr net.Addr
		var err error
		if uc != nil {
			n, from, err = uc.ReadFromUDPAddrPort(buf)
		} else {
			n, addr, err = pc.ReadFrom(buf)
			if ua, ok := addr.(*net.UDPAddr); ok {
				from = ua.AddrPort()
			}
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("UDP read error", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		pkt := buf[:n]
		if n < 12 {
			p.debug("Short query received")
			continue
		}
		if p.cfg.TCPOnly {
			// 1.x --tcp-only: bounce the query with TC so the client asks
			// again over TCP. No upstream traffic.
			out, err := edns.TCReplyBytes(scratch[:0], pkt)
			if err != nil {
				p.debug("Dropping a malformed query", "err", err)
				continue
			}
			scratch = out
			writeUDP(pc, uc, out, from, addr)
			continue
		}
		r := getRequest()
		q, meta, err := edns.PrepareQuery(r.q[:0], pkt, uint16(p.cfg.EDNSPayloadSize))
		if err != nil {
			p.debug("Dropping a malformed query", "err", err)
			putRequest(r)
			continue
		}
		r.q, r.meta = q, meta
		r.pc, r.uc, r.client, r.addr = pc, uc, from, addr
		p.startUDP(r)
	}
}

func writeUDP(pc net.PacketConn, uc *net.UDPConn, b []byte, to netip.AddrPort, addr net.Addr) {
	if uc != nil {
		uc.WriteToUDPAddrPort(b, to)
		return
	}
	pc.WriteTo(b, addr)
}

// handleUDP resolves r on the goroutine path.
func (p *Proxy) handleUDP(r *request) {
	defer p.finish(r)
	if out, ok := p.reply(r, p.resolve(r)); ok {
		r.writeUDP(out)
	}
}

// reply turns the outcome of resolving r into what the client gets: the
// answer, or SERVFAIL when the upstream failed. ok is false when the
// client gets nothing: the request was dropped or the proxy is stopping.
func (p *Proxy) reply(r *request, err error) (out []byte, ok bool) {
	if err == nil {
		out, err = edns.PrepareAnswer(r.out[:0], r.ans, r.meta)
		if err == nil {
			r.out = out
			return out, true
		}
		err = errMismatch(err)
	}
	if r.dropped.Load() {
		return nil, false
	}
	p.upstreamFailed(err)
	return p.servfail(r)
}

// errMismatch wraps PrepareAnswer's refusal of the resolver's answer.
func errMismatch(err error) error {
	return fmt.Errorf("the resolver's answer does not match the query: %w", err)
}

// upstreamFailed logs a failed request: one line per distinct failure
// while failures repeat, so an outage does not flood the log.
func (p *Proxy) upstreamFailed(err error) {
	msg := err.Error()
	if prev, _ := p.lastFailure.Swap(msg).(string); prev == msg {
		p.debug("Upstream failure", "err", err)
		return
	}
	p.log.Warn("Unable to get an answer from the resolver, answering SERVFAIL", "err", err)
}

// servfail builds a SERVFAIL answer to r's query.
func (p *Proxy) servfail(r *request) ([]byte, bool) {
	q := new(dns.Msg)
	if err := q.Unpack(r.q); err != nil {
		return nil, false
	}
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	b, err := m.Pack()
	if err != nil {
		return nil, false
	}
	out, err := edns.PrepareAnswer(r.out[:0], b, r.meta)
	if err != nil {
		return nil, false
	}
	r.out = out
	return out, true
}

// clientConn is an inbound TCP connection: queries are read in order and
// answered as they complete, matched by ID (pipelining, RFC 7766).
type clientConn struct {
	c        net.Conn
	mu       sync.Mutex // serialises answers
	inflight sync.WaitGroup
	pending  atomic.Int32
	broken   atomic.Bool
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

// serveTCP accepts client connections until ln is closed.
func (p *Proxy) serveTCP(ctx context.Context, ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("TCP accept error", "err", err)
			select {
			case <-time.After(acceptPause):
			case <-ctx.Done():
				return
			}
			continue
		}
		if p.conns.Add(1) > int64(p.maxConns) {
			p.conns.Add(-1)
			p.debug("Too many TCP clients, closing a new connection")
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serveConn(ctx, c)
	}
}

func (p *Proxy) serveConn(ctx context.Context, c net.Conn) {
	defer p.wg.Done()
	defer p.conns.Add(-1)
	cc := &clientConn{c: c}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	var l [2]byte
	buf := make([]byte, 0, 512)
	queries := 0
	defer func() { p.debug("TCP client connection closed", "client", c.RemoteAddr(), "queries", queries) }()
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		if _, err := io.ReadFull(c, l[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && cc.pending.Load() > 0 && ctx.Err() == nil {
				continue // idle only counts without answers pending
			}
			break
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		if _, err := io.ReadFull(c, buf); err != nil {
			break
		}
		if n < 12 {
			p.debug("Short query received")
			break
		}
		r := getRequest()
		q, meta, err := edns.PrepareQuery(r.q[:0], buf, uint16(p.cfg.EDNSPayloadSize))
		if err != nil {
			p.debug("Dropping a malformed query", "err", err)
			putRequest(r)
			break // framing may be lost: close, as servers do
		}
		meta.Limit = edns.MaxTCPSize
		queries++
		r.q, r.meta, r.conn = q, meta, cc
		cc.inflight.Add(1)
		cc.pending.Add(1)
		if !p.admit(r) {
			cc.pending.Add(-1)
			cc.inflight.Done()
			p.finish(r)
			break
		}
		p.withContext(r)
		go p.handleTCP(r)
	}
	cc.inflight.Wait()
}

func (p *Proxy) handleTCP(r *request) {
	cc := r.conn
	defer cc.inflight.Done()
	defer cc.pending.Add(-1)
	defer p.finish(r)
	if out, ok := p.reply(r, p.resolve(r)); ok {
		cc.write(out)
	}
}
