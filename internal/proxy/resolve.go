package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
)

var errNoCert = errors.New("no usable certificate yet")

// Padding of UDP queries. The resolver never answers a UDP query with more
// bytes than the query had (spec section 9), so the padded length decides
// the largest answer that can come back over UDP: about paddedLen + 19
// bytes (68 bytes of query overhead against 48 of response overhead, and at
// least one byte of padding). Queries are padded to what the client can
// take, within an adaptive cap that starts at 512 (dnscrypt-proxy 1.x) and
// grows by 64 after each truncated answer (the spec's min-query-len rule).
const (
	initialUDPPad = 512
	maxUDPPad     = 4096
	padSlack      = dnscrypt.QueryOverhead - dnscrypt.ResponseOverhead - 1 // 19
)

// failuresBeforeRecheck consecutive upstream failures make the proxy check
// the certificates early: the resolver may have changed its key.
const failuresBeforeRecheck = 4

// resolve sends the prepared query r.q to the resolver over TCP (UDP
// queries with a certificate take the fast path) and leaves the decrypted
// answer in r.ans.
func (p *Proxy) resolve(r *request) error {
	cert := p.refresher.Current()
	if cert == nil {
		p.refresher.Trigger() // a client is waiting: try again soon
		return errNoCert
	}
	id, err := p.ids.get()
	if err != nil {
		return err
	}
	k, err := id.sharedKey(cert)
	if err != nil {
		return fmt.Errorf("certificate #%d: %w", cert.Serial, err)
	}
	return p.resolveTCP(r, id, k)
}

// upstreamLimit is the largest answer the resolver may send over UDP given
// the OPT record of the query we send.
func (p *Proxy) upstreamLimit(q *edns.Query) int {
	if p.cfg.EDNSPayloadSize > edns.MinUDPSize {
		return p.cfg.EDNSPayloadSize
	}
	return min(q.Limit, maxUDPPad) // the client's own OPT, or 512
}

// udpPadding returns the padded length of r's UDP query: enough for an
// answer as large as the client accepts, within the adaptive cap.
func (p *Proxy) udpPadding(r *request) int {
	want := min(r.meta.Limit, p.upstreamLimit(&r.meta))
	need := dnscrypt.UDPPaddedLen(0, want-padSlack)
	return dnscrypt.UDPPaddedLen(len(r.q), min(need, int(p.udpPad.Load())))
}

// udpWasEnough reports, for a truncated UDP answer to r, whether UDP could
// already bring all the client can take: the client then gets the
// truncated answer and asks over TCP itself. Otherwise the proxy asks over
// TCP now.
func (p *Proxy) udpWasEnough(r *request) bool {
	return min(r.padded+padSlack, p.upstreamLimit(&r.meta)) >= r.meta.Limit
}

func (p *Proxy) growUDPPad(used int) {
	for {
		cur := p.udpPad.Load()
		next := min(int32(used+dnscrypt.BlockSize), maxUDPPad)
		if next <= cur || p.udpPad.CompareAndSwap(cur, next) {
			return
		}
	}
}

// resolveTCP sends r.q over a new TCP connection.
func (p *Proxy) resolveTCP(r *request, id *identity, k *dnscrypt.SharedKey) error {
	var rnd [dnscrypt.HalfNonceSize + 1]byte
	rand.Read(rnd[:])
	nonce := [dnscrypt.HalfNonceSize]byte(rnd[:])
	padded := dnscrypt.TCPPaddedLen(len(r.q), rnd[dnscrypt.HalfNonceSize])
	pkt, err := dnscrypt.SealQuery(append(r.tpkt[:0], 0, 0), r.q, k, &nonce, padded)
	if err != nil {
		return err
	}
	r.tpkt = pkt
	binary.BigEndian.PutUint16(pkt, uint16(len(pkt)-2))
	if err := p.tcpExchange(r.ctx, id, r, pkt); err != nil {
		p.failed(err)
		return err
	}
	r.ans, err = dnscrypt.OpenResponse(r.ans[:0], r.resp, k, &nonce)
	if err != nil {
		err = fmt.Errorf("%w: %w", errCorrupt, err)
		p.failed(err)
		return err
	}
	p.succeeded(r)
	if truncated(r.ans) {
		p.failLog.report(time.Now(), noteTruncatedTCP, fmt.Errorf("the query advertised %s", ednsSizeOf(r.q)))
	}
	return nil
}

func truncated(msg []byte) bool { return len(msg) > 2 && msg[2]&0x02 != 0 }

// ednsSizeOf describes the EDNS payload size of the query q, for the log.
func ednsSizeOf(q []byte) string {
	m := new(dns.Msg)
	if m.Unpack(q) != nil {
		return "an unknown EDNS size"
	}
	if opt := m.IsEdns0(); opt != nil {
		return fmt.Sprintf("EDNS size %d", opt.UDPSize())
	}
	return "no EDNS (512 bytes)"
}

// failed counts an upstream failure; a run of them triggers an early
// certificate check. Failures caused by the request's own end (eviction,
// shutdown) do not count.
func (p *Proxy) failed(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if p.failures.Add(1) == failuresBeforeRecheck {
		p.log.Warn("Repeated upstream failures - checking the server certificates", "err", err)
		p.refresher.Trigger()
	}
}

// succeeded notes that r got an answer: the failure streak ends, and the
// time r took goes into the round-trip estimate.
func (p *Proxy) succeeded(r *request) {
	p.observeRTT(time.Since(r.born))
	if p.failures.Load() != 0 {
		p.failures.Store(0)
	}
}

func (p *Proxy) debug(msg string, args ...any) {
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug(msg, args...)
	}
}
