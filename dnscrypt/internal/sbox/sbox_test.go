package sbox

import (
	"bytes"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/nacl/secretbox"
)

// TestXSalsa20MatchesSecretbox compares Seal and Open with NaCl's secretbox
// for every length around the block and fast-path boundaries.
func TestXSalsa20MatchesSecretbox(t *testing.T) {
	var key [32]byte
	var nonce [24]byte
	rand.Read(key[:])
	rand.Read(nonce[:])
	for n := 0; n <= 600; n++ {
		msg := make([]byte, n)
		rand.Read(msg)
		want := secretbox.Seal(nil, msg, &nonce, &key)

		buf := append(make([]byte, Headroom), msg...)
		Seal(XSalsa20, buf, &nonce, &key)
		got := buf[Headroom-Overhead:]
		if !bytes.Equal(got, want) {
			t.Fatalf("length %d: got %x, want %x", n, got, want)
		}
		out := make([]byte, n)
		if !Open(XSalsa20, out, want, &nonce, &key) || !bytes.Equal(out, msg) {
			t.Fatalf("length %d: Open failed", n)
		}
	}
}

// TestXChaCha20SealOpen checks that sealing in one keystream call and
// opening in two (block 0, then the rest) agree for every length; the
// construction itself is checked against libsodium in the parent package.
func TestXChaCha20SealOpen(t *testing.T) {
	var key [32]byte
	var nonce [24]byte
	rand.Read(key[:])
	rand.Read(nonce[:])
	for n := 0; n <= 600; n++ {
		msg := make([]byte, n)
		rand.Read(msg)
		buf := append(make([]byte, Headroom), msg...)
		Seal(XChaCha20, buf, &nonce, &key)
		box := buf[Headroom-Overhead:]
		out := make([]byte, n)
		if !Open(XChaCha20, out, box, &nonce, &key) || !bytes.Equal(out, msg) {
			t.Fatalf("length %d: Open failed", n)
		}
		// In place, exact overlap.
		inPlace := bytes.Clone(box)
		if !Open(XChaCha20, inPlace[Overhead:], inPlace, &nonce, &key) || !bytes.Equal(inPlace[Overhead:], msg) {
			t.Fatalf("length %d: in-place Open failed", n)
		}
		if n > 0 {
			box[Overhead+n-1] ^= 1
			if Open(XChaCha20, out, box, &nonce, &key) {
				t.Fatalf("length %d: tampered box opened", n)
			}
		}
	}
}

func TestOpenShort(t *testing.T) {
	var key [32]byte
	var nonce [24]byte
	if Open(XSalsa20, nil, make([]byte, Overhead-1), &nonce, &key) {
		t.Fatal("opened a box shorter than its tag")
	}
	if Open(XSalsa20, make([]byte, 1), make([]byte, Overhead+2), &nonce, &key) {
		t.Fatal("opened into a too small dst")
	}
}
