package dnscrypt

import (
	"crypto/subtle"
	"io"

	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/curve25519"
	//lint:ignore SA1019 HSalsa20 derives the es 1 shared key, as crypto_box_beforenm does
	"golang.org/x/crypto/salsa20/salsa"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt/internal/sbox"
)

// KeyPair is an X25519 key pair.
type KeyPair struct {
	Public [KeySize]byte
	Secret [KeySize]byte
}

// GenerateKeyPair draws a secret key from rand (normally crypto/rand.Reader)
// and derives its public key.
func GenerateKeyPair(rand io.Reader) (*KeyPair, error) {
	var sk [KeySize]byte
	if _, err := io.ReadFull(rand, sk[:]); err != nil {
		return nil, err
	}
	return NewKeyPair(&sk)
}

// NewKeyPair derives the public key of the X25519 secret key sk.
func NewKeyPair(sk *[KeySize]byte) (*KeyPair, error) {
	pk, err := curve25519.X25519(sk[:], curve25519.Basepoint)
	if err != nil {
		return nil, err // unreachable for the base point
	}
	kp := &KeyPair{Secret: *sk}
	copy(kp.Public[:], pk)
	return kp, nil
}

// SharedKey is the precomputed key of one (client key pair, resolver
// certificate), together with the fields every query under it carries: the
// certificate's client magic and the client public key. It is immutable and
// safe for concurrent use; a new certificate or client key needs a new
// SharedKey.
type SharedKey struct {
	c        Construction
	key      [KeySize]byte
	magic    [ClientMagicSize]byte
	clientPK [KeySize]byte
}

// NewSharedKey computes the key a client with key pair kp uses with the
// resolver public key resolverPK of a certificate of construction c and
// client magic magic. It returns ErrWeakKey for a low-order resolverPK and
// ErrUnsupported for an unknown construction.
//
// es-version 1: HSalsa20(X25519(sk, pk), 0^16), NaCl's crypto_box_beforenm.
// es-version 2: HChaCha20(X25519(sk, pk), 0^16).
func NewSharedKey(c Construction, kp *KeyPair, resolverPK *[KeySize]byte, magic [ClientMagicSize]byte) (*SharedKey, error) {
	k := &SharedKey{c: c, magic: magic, clientPK: kp.Public}
	if err := k.derive(&kp.Secret, resolverPK); err != nil {
		return nil, err
	}
	return k, nil
}

// NewResolverKey computes the key a resolver with secret key resolverSK uses
// for the query whose header is h, sealed under a certificate of
// construction c. It is the resolver side of [NewSharedKey]: both sides
// arrive at the same key.
func NewResolverKey(c Construction, resolverSK *[KeySize]byte, h *QueryHeader) (*SharedKey, error) {
	k := &SharedKey{c: c, magic: h.ClientMagic, clientPK: h.ClientPK}
	if err := k.derive(resolverSK, &h.ClientPK); err != nil {
		return nil, err
	}
	return k, nil
}

// CheckPublicKey returns ErrWeakKey for a public key of low order, with
// which every shared key would be all zeros (and known to anyone).
func CheckPublicKey(pk *[KeySize]byte) error {
	// Any scalar will do: X25519 clamps it to a multiple of the cofactor,
	// which sends every low-order point, and only those, to zero.
	scalar := [KeySize]byte{1}
	if _, err := curve25519.X25519(scalar[:], pk[:]); err != nil {
		return ErrWeakKey
	}
	return nil
}

func (k *SharedKey) derive(sk, peer *[KeySize]byte) error {
	if !k.c.Supported() {
		return ErrUnsupported
	}
	// X25519 fails when the result is all zeros, that is for low-order
	// points (RFC 7748, section 6.1).
	s, err := curve25519.X25519(sk[:], peer[:])
	if err != nil {
		return ErrWeakKey
	}
	var zero [16]byte
	switch k.c {
	case XSalsa20Poly1305:
		var in [KeySize]byte
		copy(in[:], s)
		salsa.HSalsa20(&k.key, &zero, &in, &salsa.Sigma)
	case XChaCha20Poly1305:
		out, err := chacha20.HChaCha20(s, zero[:])
		if err != nil {
			return err // sizes are fixed: unreachable
		}
		copy(k.key[:], out)
	}
	return nil
}

// ClientMagic returns the client magic queries under k start with.
func (k *SharedKey) ClientMagic() [ClientMagicSize]byte { return k.magic }

// ClientPublicKey returns the client public key queries under k carry.
func (k *SharedKey) ClientPublicKey() [KeySize]byte { return k.clientPK }

// Equal reports whether k and o are the same key for the same client,
// certificate and construction, in constant time for the key bytes.
func (k *SharedKey) Equal(o *SharedKey) bool {
	return k.c == o.c && k.magic == o.magic && k.clientPK == o.clientPK &&
		subtle.ConstantTimeCompare(k.key[:], o.key[:]) == 1
}

func (k *SharedKey) cipher() sbox.Cipher {
	if k.c == XChaCha20Poly1305 {
		return sbox.XChaCha20
	}
	return sbox.XSalsa20
}
