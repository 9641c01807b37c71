// Package sbox implements the "secretbox" layout of authenticated
// encryption, a 16-byte Poly1305 tag followed by the ciphertext, over two
// stream ciphers:
//
//   - XSalsa20, which is NaCl's crypto_secretbox (DNSCrypt es-version 1);
//   - XChaCha20 with the original 8-byte-nonce ChaCha20, which is libsodium's
//     crypto_secretbox_xchacha20poly1305 (DNSCrypt es-version 2). This is not
//     the IETF XChaCha20-Poly1305 AEAD of golang.org/x/crypto/chacha20poly1305:
//     that one puts the tag last and authenticates lengths.
//
// In both, block 0 of the keystream gives the Poly1305 key (its first 32
// bytes) and encrypts the first 32 message bytes (its last 32 bytes); the
// rest of the message is encrypted from block 1 on. The tag covers the
// ciphertext only.
//
// Everything works in place on caller buffers and allocates nothing.
package sbox

import (
	"crypto/subtle"

	"golang.org/x/crypto/chacha20"
	// The Poly1305 one-time authenticator is exactly what the secretbox
	// layout needs; the package is deprecated only as a general-purpose MAC.
	//lint:ignore SA1019 secretbox's one-time authenticator, not a general-purpose MAC
	"golang.org/x/crypto/poly1305"
	//lint:ignore SA1019 HSalsa20 and the Salsa20 core are the XSalsa20Poly1305 construction (es 1)
	"golang.org/x/crypto/salsa20/salsa"
)

// Overhead is the size of the tag in front of the ciphertext.
const Overhead = poly1305.TagSize

// Cipher selects the stream cipher.
type Cipher uint8

const (
	XSalsa20  Cipher = 1
	XChaCha20 Cipher = 2
)

// stream is the keystream of one (key, nonce): block 0, then blocks 1...
type stream struct {
	xchacha bool
	// XSalsa20: HSalsa20 subkey and the Salsa20 nonce|counter block.
	subKey  [32]byte
	counter [16]byte
	// XChaCha20: x/crypto's 24-byte-nonce ChaCha20 is HChaCha20 on the first
	// 16 nonce bytes, then ChaCha20 with the nonce 0^4 | nonce[16:24]. With a
	// block counter below 2^32 that is the same keystream as the original
	// ChaCha20 with its 8-byte nonce and 64-bit counter.
	cc chacha20.Cipher
}

func (s *stream) init(c Cipher, nonce *[24]byte, key *[32]byte) {
	if c == XChaCha20 {
		cc, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
		if err != nil {
			panic("sbox: " + err.Error()) // sizes are fixed by the types
		}
		s.xchacha, s.cc = true, *cc
		return
	}
	var hNonce [16]byte
	copy(hNonce[:], nonce[:16])
	salsa.HSalsa20(&s.subKey, &hNonce, key, &salsa.Sigma)
	copy(s.counter[:], nonce[16:])
}

// all XORs the keystream from block 0 on into b. After 64 bytes, rest
// continues from block 1.
func (s *stream) all(b []byte) {
	if s.xchacha {
		s.cc.XORKeyStream(b, b)
		return
	}
	salsa.XORKeyStream(b, b, &s.counter, &s.subKey)
}

// rest XORs the keystream from block 1 on into dst; dst and src overlap
// entirely or not at all.
func (s *stream) rest(dst, src []byte) {
	if len(src) == 0 {
		return
	}
	if s.xchacha {
		s.cc.XORKeyStream(dst, src)
		return
	}
	s.counter[8] = 1
	salsa.XORKeyStream(dst, src, &s.counter, &s.subKey)
}

// Headroom is the scratch space Seal needs in front of the message.
const Headroom = 32

// Seal encrypts buf[Headroom:] in place and writes the tag to
// buf[Headroom-Overhead:Headroom]; buf[:Headroom-Overhead] is clobbered.
// Callers put the message after a header whose last Headroom bytes they
// write after sealing (the tag's 16 and the 16 before them).
//
// The layout lets one keystream call cover the Poly1305 key block and the
// whole message: the keystream over 32 zero bytes is the Poly1305 key, and
// x/crypto's Salsa20 assembly takes its fast multi-block path only for
// inputs of 256 bytes and more.
func Seal(c Cipher, buf []byte, nonce *[24]byte, key *[32]byte) {
	var s stream
	s.init(c, nonce, key)
	clear(buf[:Headroom])
	s.all(buf)
	var polyKey [32]byte
	copy(polyKey[:], buf[:Headroom])
	var tag [Overhead]byte
	poly1305.Sum(&tag, buf[Headroom:], &polyKey)
	copy(buf[Headroom-Overhead:], tag[:])
}

// Open checks the tag of box and decrypts box[Overhead:] into
// dst[:len(box)-Overhead]. dst and box[Overhead:] overlap entirely or not at
// all. On a bad tag it returns false and writes nothing.
func Open(c Cipher, dst, box []byte, nonce *[24]byte, key *[32]byte) bool {
	if len(box) < Overhead || len(dst) < len(box)-Overhead {
		return false
	}
	var s stream
	s.init(c, nonce, key)
	var first [64]byte
	s.all(first[:])
	var polyKey [32]byte
	copy(polyKey[:], first[:32])
	var tag [Overhead]byte
	copy(tag[:], box)
	ct := box[Overhead:]
	if !poly1305.Verify(&tag, ct, &polyKey) {
		return false
	}
	dst = dst[:len(ct)]
	n := min(len(ct), 32)
	subtle.XORBytes(dst[:n], ct[:n], first[32:32+n])
	s.rest(dst[n:], ct[n:])
	return true
}
