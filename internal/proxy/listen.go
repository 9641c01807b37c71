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
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
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
		var r *request
		if scratch, r = p.intake(scratch[:0], buf[:n], from.Addr(), false); r == nil {
			if len(scratch) > 0 {
				writeUDP(pc, uc, scratch, from, addr)
			}
			continue
		}
		r.pc, r.uc, r.client, r.addr = pc, uc, from, addr
		p.start(r)
	}
}

// intake takes the client query pkt. It returns either a request to
// resolve upstream, or else, in out (appended to dst), the answer to give
// at once: a name answered locally (see package names), the TC bounce of
// --tcp-only for a UDP client, or the error answer to a query that cannot
// be forwarded (FORMERR, BADVERS, NOTIMP, a cookie-only query's answer;
// see edns.ErrorReply). Neither (out empty, r nil) means no answer at all:
// a packet shorter than a header, or a response.
func (p *Proxy) intake(dst, pkt []byte, client netip.Addr, tcp bool) (out []byte, r *request) {
	if out, why, ok := p.names.Local(dst, pkt, uint16(p.cfg.EDNSPayloadSize)); ok {
		p.debug("Answered locally", "why", why)
		return out, nil
	}
	if p.cfg.TCPOnly && !tcp {
		// 1.x --tcp-only: bounce the query with TC so the client asks
		// again over TCP. No upstream traffic.
		if out, err := edns.TCReplyBytes(dst, pkt); err == nil {
			return out, nil
		}
		out, _ := edns.ErrorReply(dst, pkt, p.cookies, client, time.Now())
		return out, nil
	}
	r = p.getRequest()
	if err := p.prepare(r, pkt, tcp); err != nil {
		putRequest(r)
		out, ok := edns.ErrorReply(dst, pkt, p.cookies, client, time.Now())
		p.debug("Not a query to forward", "err", err, "answered", ok)
		return out, nil
	}
	p.cookies.Stamp(&r.meta, client, time.Now())
	return dst, r
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
	if rewrite && !tcpClient && p.up.Stream() && meta.Limit > size {
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

// start admits r and hands it to the upstream, or completes it at once
// (shed: SERVFAIL; stopping: nothing). r may be recycled when it returns.
func (p *Proxy) start(r *request) {
	if err := p.admit(r); err != nil {
		p.complete(r, nil, err)
		return
	}
	p.exchange(r)
}

// reply turns the outcome of resolving r into what the client gets: the
// answer, or SERVFAIL when the upstream failed or r was evicted. ok is
// false when the client gets nothing: the proxy is stopping.
func (p *Proxy) reply(r *request, answer []byte, err error) (out []byte, ok bool) {
	if err == nil {
		if out, err = p.answer(r.out[:0], answer, r); err == nil {
			r.out = out
			return out, true
		}
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

// answer turns ans, the resolver's answer to r, into the client's answer,
// appended to dst: internal addresses removed (see names.Policy.Filter;
// in place, in ans), then fitted to the client (edns.PrepareAnswer).
func (p *Proxy) answer(dst, ans []byte, r *request) ([]byte, error) {
	filtered, rm, err := p.names.Filter(ans[:0], ans)
	if err != nil {
		return dst, fmt.Errorf("%w: %w", upstream.ErrCorrupt, err)
	}
	if rm.Name != "" {
		p.failLog.report(time.Now(), noteFiltered, fmt.Errorf("%s: %v", rm.Name, rm))
	}
	out, err := edns.PrepareAnswer(dst, filtered, r.meta)
	if err != nil {
		return dst, errMismatch(err)
	}
	return out, nil
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

// servfail builds a SERVFAIL answer to r's query, in r.out.
func (p *Proxy) servfail(r *request) ([]byte, bool) {
	r.scratch = edns.RcodeReply(r.scratch[:0], r.q, dns.RcodeServerFailure)
	out, err := edns.PrepareAnswer(r.out[:0], r.scratch, r.meta)
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
	var scratch []byte
	var client netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = ta.AddrPort().Addr()
	}
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
		var r *request
		if scratch, r = p.intake(scratch[:0], buf, client, true); r == nil {
			if len(scratch) == 0 {
				p.debug("Not a query, closing the connection")
				break // a response, or no header: as unbound does
			}
			cc.write(scratch)
			continue
		}
		if !p.conns.busy(cc, time.Now()) {
			putRequest(r)
			break // closed to make room
		}
		queries++
		r.conn = cc
		cc.inflight.Add(1)
		if err := p.admit(r); err != nil {
			p.complete(r, nil, err) // shed: SERVFAIL; stopping: nothing
			if errors.Is(err, errStopping) {
				break
			}
			continue
		}
		p.exchange(r)
	}
	cc.inflight.Wait()
}
