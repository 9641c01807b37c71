package edns

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"time"
)

// DNS cookie sizes ([RFC 7873] section 4).
const (
	clientCookieLen = 8
	serverCookieLen = 16 // what Cookies makes: the RFC 9018 layout
	// The COOKIE option of a query holds a client cookie alone, or a client
	// cookie and a server cookie of 8 to 32 bytes.
	minCookieLen = clientCookieLen + 8
	maxCookieLen = clientCookieLen + 32
	// cookieOptLen is the whole COOKIE option the proxy puts in an answer:
	// code, length, client cookie, server cookie.
	cookieOptLen = 4 + clientCookieLen + serverCookieLen
)

// Cookies makes the server cookies of the proxy's answers to clients that
// send a DNS cookie ([RFC 7873]), so that they see a cookie-capable server
// although no cookie ever goes upstream: PrepareQuery removes every COOKIE
// option from the query it sends, and PrepareAnswer removes the resolver's
// from the answer. A client cookie is often stable for a long time (BIND
// derives it from a secret and the server address); sent upstream it would
// let the resolver link the queries of one client across Tor circuits.
//
// A server cookie has the layout of [RFC 9018]: version 1, three reserved
// zero bytes, a timestamp and SipHash-2-4 of the client cookie, those eight
// bytes and the client's address, keyed with a per-process secret. Server
// cookies that clients send back are not checked: every answer carries a
// fresh one, as RFC 7873 section 5.2.3 allows, and no query is ever refused
// with BADCOOKIE. The secret only makes the cookies unpredictable.
//
// A Cookies is immutable and safe for concurrent use. A nil *Cookies makes
// no cookies: answers carry none, as from a server that does not implement
// them, and a cookie-only query gets FORMERR.
//
// [RFC 7873]: https://www.rfc-editor.org/rfc/rfc7873
// [RFC 9018]: https://www.rfc-editor.org/rfc/rfc9018
type Cookies struct {
	k0, k1 uint64 // the SipHash key
}

// NewCookies returns a Cookies that makes server cookies keyed with secret,
// which should be random (crypto/rand) and new for every process.
func NewCookies(secret [16]byte) *Cookies {
	return &Cookies{
		k0: binary.LittleEndian.Uint64(secret[:8]),
		k1: binary.LittleEndian.Uint64(secret[8:]),
	}
}

// Stamp gives the answer to q a server cookie, made for the client at
// address client (the zero Addr if unknown) at time now: PrepareAnswer then
// adds a COOKIE option with the client's cookie and that server cookie to
// the answer. It does nothing if the client sent no cookie, or if c is nil.
// Call it after PrepareQuery and before PrepareAnswer.
func (c *Cookies) Stamp(q *Query, client netip.Addr, now time.Time) {
	if c == nil || q.cookie == cookieNone {
		return
	}
	c.serverCookie((*[serverCookieLen]byte)(q.cookieBytes[clientCookieLen:]),
		(*[clientCookieLen]byte)(q.cookieBytes[:clientCookieLen]), client, uint32(now.Unix()))
	q.cookie = cookieStamped
}

// serverCookie writes to sc the RFC 9018 server cookie for client cookie cc
// from address ip at time ts (seconds, modulo 2**32): version 1, reserved
// zero, ts, and SipHash-2-4(cc | version | reserved | ts | ip). An IPv4
// address, mapped or not, counts as its 4 bytes; an invalid one as none.
func (c *Cookies) serverCookie(sc *[serverCookieLen]byte, cc *[clientCookieLen]byte, ip netip.Addr, ts uint32) {
	var in [clientCookieLen + 8 + 16]byte
	copy(in[:], cc[:])
	in[8] = 1 // version; reserved bytes 9 to 11 stay zero
	binary.BigEndian.PutUint32(in[12:], ts)
	n := 16
	if ip.IsValid() {
		ip = ip.Unmap()
		if ip.Is4() {
			a := ip.As4()
			n += copy(in[n:], a[:])
		} else {
			a := ip.As16()
			n += copy(in[n:], a[:])
		}
	}
	copy(sc[:], in[8:16])
	binary.LittleEndian.PutUint64(sc[8:], sipHash24(c.k0, c.k1, in[:n]))
}

// sipHash24 is SipHash-2-4 of m with the key (k0, k1), the key's two
// little-endian halves (Aumasson and Bernstein, "SipHash: a fast short-input
// PRF", 2012), the hash RFC 9018 uses.
func sipHash24(k0, k1 uint64, m []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13) ^ v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16) ^ v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21) ^ v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17) ^ v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	compress := func(w uint64) {
		v3 ^= w
		round()
		round()
		v0 ^= w
	}
	n := len(m)
	for ; len(m) >= 8; m = m[8:] {
		compress(binary.LittleEndian.Uint64(m))
	}
	var last [8]byte
	copy(last[:], m)
	last[7] = byte(n)
	compress(binary.LittleEndian.Uint64(last[:]))
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

// validCookieLen reports whether n is a valid length for the COOKIE option
// of a query: a client cookie alone, or with a server cookie of 8 to 32
// bytes (RFC 7873 section 5.2.2: anything else is FORMERR).
func validCookieLen(n int) bool {
	return n == clientCookieLen || minCookieLen <= n && n <= maxCookieLen
}
