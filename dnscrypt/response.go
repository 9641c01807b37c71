package dnscrypt

import "github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt/internal/sbox"

// Layout of a response: resolver magic | client nonce half | resolver nonce
// half | tag | ciphertext of (DNS message | padding).
const (
	respNonceOffset = ResolverMagicLen
	respBoxOffset   = respNonceOffset + NonceSize
)

// OpenResponse checks the encrypted response resp to the query sealed with
// nonce under k, decrypts it and appends the DNS message to dst.
//
// The len(resp)-ResponseOverhead bytes appended to dst (the message, then
// its padding) must not overlap resp at all: opening in place is not
// supported, and any overlap, resp[:0] as dst included, gives ErrOverlap.
// The first len(dst) bytes of dst are kept and may overlap resp. nonce is
// read before anything is written, so it may point into dst.
//
// It checks, in order: the length (ErrShort, ErrLong), the overlap
// (ErrOverlap), the resolver magic (ErrMagic), that the response echoes
// nonce (ErrNonce), the Poly1305 tag (ErrAuth), the padding (ErrPadding)
// and that a DNS header and question fit in what remains (ErrShort). On
// error dst is returned unchanged in length.
func OpenResponse(dst, resp []byte, k *SharedKey, nonce *[HalfNonceSize]byte) ([]byte, error) {
	if len(resp) < ResponseOverhead+MinDNSSize+1 {
		return dst, ErrShort
	}
	if len(resp) > MaxDNSSize {
		return dst, ErrLong
	}
	if anyOverlap(appended(dst, len(resp)-ResponseOverhead), resp) {
		return dst, ErrOverlap
	}
	if string(resp[:ResolverMagicLen]) != ResolverMagic {
		return dst, ErrMagic
	}
	if [HalfNonceSize]byte(resp[respNonceOffset:]) != *nonce {
		return dst, ErrNonce
	}
	full := [NonceSize]byte(resp[respNonceOffset:])
	return open(dst, resp[respBoxOffset:], k, &full)
}

// SealResponse is the resolver side of [OpenResponse]: it appends to dst the
// encrypted response carrying msg, padded to paddedLen bytes, for the query
// with client nonce clientNonce, using the resolver's half resolverNonce.
// The packet is ResponseOverhead+paddedLen bytes long. Overlap is as for
// [SealQuery]: msg[:0] as dst seals in place, any other overlap of the
// appended bytes with msg gives ErrOverlap. The nonces may point into dst.
func SealResponse(dst, msg []byte, k *SharedKey, clientNonce, resolverNonce *[HalfNonceSize]byte, paddedLen int) ([]byte, error) {
	if len(msg) < MinDNSSize {
		return dst, ErrShort
	}
	if paddedLen <= len(msg) || paddedLen > MaxDNSSize-ResponseOverhead {
		return dst, ErrPaddedLen
	}
	if inexactOverlap(appended(dst, ResponseOverhead+paddedLen), msg) {
		return dst, ErrOverlap
	}
	full := responseNonce(clientNonce, resolverNonce)
	ret, out := grow(dst, ResponseOverhead+paddedLen)
	if _, err := Pad(out[:ResponseOverhead], msg, paddedLen); err != nil {
		return dst, err
	}
	sealResponse(out, k, &full)
	return ret, nil
}

// SealResponseRaw seals plain exactly as given, without adding padding: plain
// must already end with its padding. It exists for test resolvers that send
// malformed padding on purpose; everything else uses [SealResponse].
// Overlap is as for [SealResponse].
func SealResponseRaw(dst, plain []byte, k *SharedKey, clientNonce, resolverNonce *[HalfNonceSize]byte) ([]byte, error) {
	if len(plain) > MaxDNSSize-ResponseOverhead {
		return dst, ErrLong
	}
	if inexactOverlap(appended(dst, ResponseOverhead+len(plain)), plain) {
		return dst, ErrOverlap
	}
	full := responseNonce(clientNonce, resolverNonce)
	ret, out := grow(dst, ResponseOverhead+len(plain))
	copy(out[ResponseOverhead:], plain)
	sealResponse(out, k, &full)
	return ret, nil
}

// responseNonce joins the two halves of a response nonce. The sealing
// functions take this copy before writing anything, so that the halves
// may point into dst.
func responseNonce(clientNonce, resolverNonce *[HalfNonceSize]byte) (full [NonceSize]byte) {
	copy(full[:], clientNonce[:])
	copy(full[HalfNonceSize:], resolverNonce[:])
	return full
}

// sealResponse seals out[ResponseOverhead:] in place and writes the header.
func sealResponse(out []byte, k *SharedKey, full *[NonceSize]byte) {
	sbox.Seal(k.cipher(), out[ResponseOverhead-sbox.Headroom:], full, &k.key)
	// The header goes in after sealing: Seal used its tail as scratch.
	copy(out, ResolverMagic)
	copy(out[respNonceOffset:], full[:])
}
