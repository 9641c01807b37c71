package stamps

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
)

// ParseProviderKey parses a provider's Ed25519 public key written as
// dnscrypt-proxy 1.x accepts it: 64 hexadecimal digits, upper or lower
// case, optionally split by colons and white space between bytes, as in
// "E801:B84E:A606:...:324D" (the form 1.x prints and resolver lists use)
// or "e801b84ea606...324d". A separator inside a byte ("E80:1B8...") is
// an error, as in libsodium's sodium_hex2bin which 1.x uses. Unlike
// client keys, provider keys do not allow '-'.
//
// The key must be exactly 32 bytes. Errors wrap [ErrInvalidProviderKey].
func ParseProviderKey(s string) (ed25519.PublicKey, error) {
	pk, err := DecodeKeyHex(s, ": \t\r\n\v\f", ed25519.PublicKeySize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidProviderKey, err)
	}
	if len(pk) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidProviderKey, len(pk), ed25519.PublicKeySize)
	}
	return pk, nil
}

// DecodeKeyHex decodes key text the way dnscrypt-proxy 1.x reads keys
// (libsodium's sodium_hex2bin with an ignore set): hexadecimal digits of
// either case, any of the bytes in separators between two bytes but never
// inside one. It returns at most max bytes; more, no digit at all, an odd
// number of digits, or any other character is an error.
func DecodeKeyHex(s, separators string, max int) ([]byte, error) {
	out := make([]byte, 0, max)
	var hi byte
	half := false // a high nibble is pending
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		v, ok := hexVal(c)
		if !ok {
			if strings.IndexByte(separators, c) < 0 {
				return nil, fmt.Errorf("invalid character %q at offset %d", c, i)
			}
			if half {
				return nil, fmt.Errorf("separator %q splits a byte at offset %d", c, i)
			}
			continue
		}
		digits++
		if !half {
			hi, half = v, true
			continue
		}
		half = false
		if len(out) == max {
			return nil, fmt.Errorf("longer than %d bytes", max)
		}
		out = append(out, hi<<4|v)
	}
	switch {
	case digits == 0:
		return nil, errors.New("no hex digits")
	case half:
		return nil, fmt.Errorf("odd number of hex digits (%d)", digits)
	}
	return out, nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
