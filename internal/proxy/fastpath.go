package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

// The UDP fast path. A UDP client query, when the resolver is reached over
// UDP, needs no goroutine of its own: the
// listener seals and sends it, and the upstream reader that receives the
// answer opens it and writes it to the client. Only the exceptions (a
// truncated answer to retry over TCP, a UDP timeout, an upstream socket
// error) move to a goroutine. That saves a goroutine and two wake-ups per
// query, the bulk of the proxy's own CPU time per query.

// sweepInterval is how often the sweeper looks for UDP attempts that timed
// out; it bounds how late a timeout is noticed.
const sweepInterval = 50 * time.Millisecond

// startUDP takes a prepared UDP client query. With a certificate and the
// resolver reached over UDP, it is sealed and sent here, on the fast path;
// otherwise (through SOCKS, --tcp-only, no certificate yet) a goroutine
// resolves it over TCP or answers SERVFAIL.
func (p *Proxy) startUDP(r *request) {
	// Admission first, so that a shed request costs no sealing. Until
	// send, r is the listener's (an eviction meanwhile only marks it).
	if err := p.admit(r); err != nil {
		p.complete(r, err) // shed: SERVFAIL; stopping: nothing
		return
	}
	m := p.mux()
	if fast := m != nil && p.seal(r); !fast {
		p.withContext(r)
		go p.handleUDP(r)
		return
	}
	switch err := m.send(r); {
	case err == nil:
		// Dropped while being sent: claim it back, unless the answer
		// came first.
		if r.dropped.Load() && m.claim(r) {
			p.complete(r, errEvicted)
		}
	case errors.Is(err, errClaimed):
		// The claimer finishes it.
	default:
		p.debug("UDP upstream send failed, retrying over TCP", "err", err)
		p.withContext(r)
		go p.fallbackTCP(r)
	}
}

// seal prepares r for the fast path: its identity (the static key pair, or
// a fresh one with ephemeral keys: then two X25519 operations, about 0.1 ms,
// on the listener's goroutine, as dnscrypt-proxy 1.x did in its event loop),
// the shared key with the current certificate, the padded packet. false means no certificate yet (or a
// key that cannot be used): the goroutine path answers.
func (p *Proxy) seal(r *request) bool {
	cert := p.refresher.Current()
	if cert == nil {
		return false
	}
	id, err := p.ids.get()
	if err != nil {
		return false
	}
	k, err := id.sharedKey(cert)
	if err != nil {
		return false
	}
	padded := p.udpPadding(r)
	rand.Read(r.nonce[:])
	if r.pkt, err = dnscrypt.SealQuery(r.pkt[:0], r.q, k, &r.nonce, padded); err != nil {
		return false
	}
	r.id, r.key, r.padded = id, k, padded
	r.udpDeadline = time.Now().Add(min(p.udpWait, p.cfg.Timeout))
	return true
}

// deliverUDP completes the fast-path request r, claimed by the upstream
// reader, with the resolver's response resp.
func (p *Proxy) deliverUDP(m *udpMux, r *request, resp []byte, rb *readerBuf) {
	ans, err := dnscrypt.OpenResponse(rb.ans[:0], resp, r.key, &r.nonce)
	if err != nil {
		// A forged or corrupted datagram must not cancel the query: wait
		// for another one until the UDP deadline.
		err = fmt.Errorf("%w: %w", errCorrupt, err)
		p.failed(err)
		if r.dropped.Load() {
			p.complete(r, err)
			return
		}
		m.wait(r)
		return
	}
	p.succeeded(r)
	if truncated(ans) {
		p.growUDPPad(r.padded)
		if !p.udpWasEnough(r) {
			p.withContext(r)
			go p.fallbackTCP(r)
			return
		}
	}
	if r.silenced() {
		p.finish(r)
		return
	}
	out, err := p.answer(rb.out[:0], ans, r)
	ok := err == nil
	if !ok {
		out, ok = p.reply(r, err)
	}
	if ok {
		r.writeUDP(out)
	}
	p.finish(r)
}

// fallbackTCP retries the fast-path request r over TCP, with the same
// identity, after a truncated answer, a UDP timeout or a send error, within
// r's deadline.
func (p *Proxy) fallbackTCP(r *request) {
	// The UDP query advertised the configured size: over TCP, advertise
	// what the client can take if that is more (see prepare).
	if size := p.cfg.EDNSPayloadSize; size > edns.MinUDPSize && r.meta.Limit > size {
		q, _, err := edns.PrepareQuery(r.ans[:0], r.q, uint16(r.meta.Limit))
		if err == nil {
			r.ans = q
			r.q = append(r.q[:0], q...)
		}
	}
	p.complete(r, p.resolveTCP(r, r.id, r.key))
}

// udpFailed takes the fast-path requests a UDP attempt failed for (a
// timeout, a refused port): each goes on over TCP within its deadline, or
// ends at once if it was dropped meanwhile.
func (p *Proxy) udpFailed(rs []*request, err error) {
	for _, r := range rs {
		if r.dropped.Load() {
			p.complete(r, errEvicted)
			continue
		}
		p.failed(err)
		r.noQueue = true
		p.withContext(r)
		go p.fallbackTCP(r)
	}
}

// sweep ends the fast-path UDP attempts that ran out of time: they go on
// over TCP, as on the goroutine path. It also writes the failure counts of
// the log windows that ended.
func (p *Proxy) sweep(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	var batch []*request
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if m := p.udp.Load(); m != nil {
				batch = m.expired(now, batch[:0])
				p.udpFailed(batch, errUDPTimeout)
				clear(batch)
			}
			p.failLog.flush(now)
		}
	}
}

// withContext gives r a context carrying its deadline, for the goroutine
// path. The active set's lock orders it with drop, which cancels it.
func (p *Proxy) withContext(r *request) {
	if r.ctx != nil {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline)
	s := &p.active
	s.mu.Lock()
	r.ctx, r.cancel = ctx, cancel
	dropped := r.dropped.Load()
	s.mu.Unlock()
	if dropped {
		cancel()
	}
}
