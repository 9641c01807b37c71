package dnscrypt

import "github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt/internal/sbox"

// Layout of a query: client magic | client public key | client nonce half |
// tag | ciphertext of (DNS query | padding).
const (
	queryPKOffset    = ClientMagicSize
	queryNonceOffset = queryPKOffset + KeySize
	queryBoxOffset   = queryNonceOffset + HalfNonceSize
)

// MaxPaddedQueryLen is the largest padded query: with its overhead it still
// fits a TCP length prefix.
const MaxPaddedQueryLen = MaxDNSSize - QueryOverhead

// SealQuery appends to dst the encrypted query for the DNS message msg under
// k, padded to paddedLen bytes (see [UDPPaddedLen] and [TCPPaddedLen]), and
// returns the extended slice. The packet is QueryOverhead+paddedLen bytes
// long. On error dst is returned unchanged.
//
// To seal in place, pass msg[:0] as dst: the packet then starts where msg
// did (in new memory if msg's capacity is too small, as with append).
// Otherwise the bytes appended to dst must not overlap msg: any other
// overlap gives ErrOverlap. The first len(dst) bytes of dst are kept and
// may overlap msg.
//
// nonce is the client's half of the nonce; the other half is zero. It must
// never repeat for one SharedKey: draw it from crypto/rand for every query.
// OpenResponse needs the same nonce to check the answer. nonce is read
// before anything is written, so it may point into dst.
func SealQuery(dst, msg []byte, k *SharedKey, nonce *[HalfNonceSize]byte, paddedLen int) ([]byte, error) {
	if len(msg) < MinDNSSize {
		return dst, ErrShort
	}
	if paddedLen <= len(msg) || paddedLen > MaxPaddedQueryLen {
		return dst, ErrPaddedLen
	}
	if inexactOverlap(appended(dst, QueryOverhead+paddedLen), msg) {
		return dst, ErrOverlap
	}
	var full [NonceSize]byte
	copy(full[:], nonce[:])
	ret, out := grow(dst, QueryOverhead+paddedLen)
	if _, err := Pad(out[:QueryOverhead], msg, paddedLen); err != nil {
		return dst, err
	}
	sbox.Seal(k.cipher(), out[QueryOverhead-sbox.Headroom:], &full, &k.key)
	// The header goes in after sealing: Seal used its tail as scratch.
	copy(out, k.magic[:])
	copy(out[queryPKOffset:], k.clientPK[:])
	copy(out[queryNonceOffset:], full[:HalfNonceSize])
	return ret, nil
}

// QueryHeader is the clear part of an encrypted query.
type QueryHeader struct {
	ClientMagic [ClientMagicSize]byte
	ClientPK    [KeySize]byte
	Nonce       [HalfNonceSize]byte
}

// ParseQueryHeader reads the clear header of the encrypted query q. A
// resolver uses ClientMagic to find the certificate, then [NewResolverKey].
func ParseQueryHeader(q []byte) (QueryHeader, error) {
	var h QueryHeader
	if len(q) < QueryOverhead+MinDNSSize+1 {
		return h, ErrShort
	}
	if len(q) > MaxDNSSize {
		return h, ErrLong
	}
	copy(h.ClientMagic[:], q)
	copy(h.ClientPK[:], q[queryPKOffset:])
	copy(h.Nonce[:], q[queryNonceOffset:])
	return h, nil
}

// OpenQuery checks and decrypts the encrypted query q with the resolver-side
// key k (from [NewResolverKey]) and appends the DNS message to dst. On error
// dst is returned unchanged.
//
// The len(q)-QueryOverhead bytes appended to dst (the message, then its
// padding) must not overlap q at all: opening in place is not supported,
// and any overlap, q[:0] as dst included, gives ErrOverlap. The first
// len(dst) bytes of dst are kept and may overlap q.
//
// It checks, in order: the length (ErrShort, ErrLong), the overlap
// (ErrOverlap), the client magic (ErrMagic), the client public key
// (ErrKey), the Poly1305 tag (ErrAuth), the padding (ErrPadding) and that
// a DNS header and question fit in what remains (ErrShort).
func OpenQuery(dst, q []byte, k *SharedKey) ([]byte, error) {
	h, err := ParseQueryHeader(q)
	if err != nil {
		return dst, err
	}
	if anyOverlap(appended(dst, len(q)-QueryOverhead), q) {
		return dst, ErrOverlap
	}
	if h.ClientMagic != k.magic {
		return dst, ErrMagic
	}
	if h.ClientPK != k.clientPK {
		return dst, ErrKey
	}
	var full [NonceSize]byte
	copy(full[:], h.Nonce[:])
	return open(dst, q[queryBoxOffset:], k, &full)
}

// open authenticates and decrypts box (tag | ciphertext) with nonce, unpads
// and appends the message to dst.
func open(dst, box []byte, k *SharedKey, nonce *[NonceSize]byte) ([]byte, error) {
	ret, out := grow(dst, len(box)-sbox.Overhead)
	if !sbox.Open(k.cipher(), out, box, nonce, &k.key) {
		return dst, ErrAuth
	}
	msg, err := Unpad(out)
	if err != nil {
		return dst, err
	}
	if len(msg) < MinDNSSize {
		return dst, ErrShort
	}
	return ret[:len(dst)+len(msg)], nil
}
