package dnscrypt

import "strconv"

// Construction is the encryption system of a certificate, its es-version.
type Construction uint16

const (
	// XSalsa20Poly1305 is es-version 1: X25519, HSalsa20 and NaCl secretbox.
	XSalsa20Poly1305 Construction = 1
	// XChaCha20Poly1305 is es-version 2: X25519, HChaCha20 and a
	// secretbox-style XChaCha20-Poly1305 (tag before the ciphertext).
	XChaCha20Poly1305 Construction = 2
)

// Supported reports whether c is an encryption system this package implements.
func (c Construction) Supported() bool {
	return c == XSalsa20Poly1305 || c == XChaCha20Poly1305
}

func (c Construction) String() string {
	switch c {
	case XSalsa20Poly1305:
		return "X25519-XSalsa20Poly1305"
	case XChaCha20Poly1305:
		return "X25519-XChaCha20Poly1305"
	}
	return "es-version " + strconv.Itoa(int(c))
}

// Sizes of the protocol's fixed fields, in bytes.
const (
	KeySize          = 32                 // X25519 public and secret keys, shared keys
	ClientMagicSize  = 8                  // prefix of every query, taken from the certificate
	ResolverMagicLen = len(ResolverMagic) // 8, prefix of every response
	NonceSize        = 24                 // full AEAD nonce of a response
	HalfNonceSize    = 12                 // the client's half, also the whole query nonce prefix
	TagSize          = 16                 // Poly1305 tag, placed before the ciphertext

	// QueryOverhead is client magic, client public key, client nonce and tag.
	QueryOverhead = ClientMagicSize + KeySize + HalfNonceSize + TagSize // 68
	// ResponseOverhead is resolver magic, full nonce and tag.
	ResponseOverhead = ResolverMagicLen + NonceSize + TagSize // 48
)

// Limits on padded plaintexts and DNS messages.
const (
	// MinDNSSize is the smallest DNS message: a header and a root question.
	MinDNSSize = 17
	// MaxDNSSize is the largest DNS message a TCP length prefix can carry.
	MaxDNSSize = 65535
	// BlockSize is the granularity of padded lengths.
	BlockSize = 64
	// MinUDPQueryLen is the initial minimum padded length of a UDP query.
	MinUDPQueryLen = 256
	// MaxPadding is the largest padding a TCP query or a response carries.
	MaxPadding = 256
)

// ResolverMagic starts every response. It is a constant, like the
// certificate magic certs.Magic: the protocol fixes it, no importer may
// change it.
const ResolverMagic = "r6fnvWj8"
