package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

// acceptPause follows an accept error (1.x: 1 s).
const acceptPause = time.Second

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
		if err := p.prepare(r, pkt, false); err != nil {
			p.debug("Dropping a malformed query", "err", err)
			putRequest(r)
			continue
		}
		r.pc, r.uc, r.client, r.addr = pc, uc, from, addr
		p.startUDP(r)
	}
}

// prepare validates the client query pkt and rewrites it into r.q, with
// r.meta. The OPT sent upstream advertises the configured payload size
// over UDP. Over TCP (a TCP client, SOCKS, --tcp-only) it advertises what
// the client can take: 65535 for a TCP client, and for a UDP client its own
// size if larger than the configured one, so that a resolver that trusts
// the OPT over TCP (or forwards it to a backend over UDP) does not
// truncate an answer the client could have had whole. A configured size of
// 512 or less disables the rewrite everywhere (1.x).
func (p *Proxy) prepare(r *request, pkt []byte, tcpClient bool) error {
	size := p.cfg.EDNSPayloadSize
	rewrite := size > edns.MinUDPSize
	if rewrite && tcpClient {
		size = edns.MaxTCPSize
	}
	q, meta, err := edns.PrepareQuery(r.q[:0], pkt, uint16(size))
	if err != nil {
		return err
	}
	if rewrite && !tcpClient && (p.cfg.SOCKS != nil || p.cfg.TCPOnly) && meta.Limit > size {
		if q, meta, err = edns.PrepareQuery(r.q[:0], pkt, uint16(meta.Limit)); err != nil {
			return err
		}
	}
	if tcpClient {
		meta.Limit = edns.MaxTCPSize
	}
	r.q, r.meta = q, meta
	return nil
}

func writeUDP(pc net.PacketConn, uc *net.UDPConn, b []byte, to netip.AddrPort, addr net.Addr) {
	if uc != nil {
		uc.WriteToUDPAddrPort(b, to)
		return
	}
	pc.WriteTo(b, addr)
}

// handleUDP resolves r on the goroutine path.
func (p *Proxy) handleUDP(r *request) { p.complete(r, p.resolve(r)) }

// reply turns the outcome of resolving r into what the client gets: the
// answer, or SERVFAIL when the upstream failed or r was evicted. ok is
// false when the client gets nothing: the proxy is stopping.
func (p *Proxy) reply(r *request, err error) (out []byte, ok bool) {
	if err == nil {
		out, err = edns.PrepareAnswer(r.out[:0], r.ans, r.meta)
		if err == nil {
			r.out = out
			return out, true
		}
		err = errMismatch(err)
	}
	if r.silenced() {
		return nil, false
	}
	if r.evicted.Load() {
		err = errEvicted
	}
	p.upstreamFailed(err)
	return p.servfail(r)
}

// respond sends out to r's client, over TCP or UDP.
func (r *request) respond(out []byte) {
	if r.conn != nil {
		r.conn.write(out)
		return
	}
	r.writeUDP(out)
}

// errMismatch wraps PrepareAnswer's refusal of the resolver's answer.
func errMismatch(err error) error {
	return fmt.Errorf("the resolver's answer does not match the query: %w", err)
}

// upstreamFailed logs a failed request: one line per kind of failure per
// window while failures repeat, so an outage does not flood the log.
func (p *Proxy) upstreamFailed(err error) {
	p.debug("Upstream failure", "err", err)
	p.failLog.report(time.Now(), classify(err), err)
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
		cc := &clientConn{c: c}
		admitted, capHit := p.conns.admit(cc, time.Now())
		if capHit {
			p.log.Warn(fmt.Sprintf("TCP connection limit (%d) reached: closing the connections idle the longest to admit new ones", p.conns.max))
		}
		if !admitted {
			p.debug("Every TCP client has a query in flight, closing a new connection")
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serveConn(ctx, cc)
	}
}

func (p *Proxy) serveConn(ctx context.Context, cc *clientConn) {
	defer p.wg.Done()
	c := cc.c
	defer p.conns.remove(cc)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	var l [2]byte
	buf := make([]byte, 0, 512)
	queries := 0
	defer func() { p.debug("TCP client connection closed", "client", c.RemoteAddr(), "queries", queries) }()
	for {
		c.SetReadDeadline(time.Now().Add(p.conns.idleTimeout()))
		if _, err := io.ReadFull(c, l[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && p.conns.pendingOn(cc) && ctx.Err() == nil {
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
		if err := p.prepare(r, buf, true); err != nil {
			p.debug("Dropping a malformed query", "err", err)
			putRequest(r)
			break // framing may be lost: close, as servers do
		}
		if !p.conns.busy(cc, time.Now()) {
			putRequest(r)
			break // closed to make room
		}
		queries++
		r.conn = cc
		cc.inflight.Add(1)
		if err := p.admit(r); err != nil {
			p.complete(r, err) // shed: SERVFAIL; stopping: nothing
			p.conns.idle(cc, time.Now())
			cc.inflight.Done()
			if errors.Is(err, errStopping) {
				break
			}
			continue
		}
		p.withContext(r)
		go p.handleTCP(r)
	}
	cc.inflight.Wait()
}

func (p *Proxy) handleTCP(r *request) {
	cc := r.conn
	defer cc.inflight.Done()
	defer func() { p.conns.idle(cc, time.Now()) }()
	p.complete(r, p.resolve(r))
}
