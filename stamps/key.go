package stamps

import (
	"crypto/ed25519"
	"fmt"
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
	pk := make(ed25519.PublicKey, 0, ed25519.PublicKeySize)
	var hi byte
	half := false // a high nibble is pending
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		v, ok := hexVal(c)
		if !ok {
			if !isKeySeparator(c) {
				return nil, fmt.Errorf("%w: invalid character %q at offset %d", ErrInvalidProviderKey, c, i)
			}
			if half {
				return nil, fmt.Errorf("%w: separator %q splits a byte at offset %d", ErrInvalidProviderKey, c, i)
			}
			continue
		}
		digits++
		if !half {
			hi, half = v, true
			continue
		}
		half = false
		if len(pk) == ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidProviderKey, ed25519.PublicKeySize)
		}
		pk = append(pk, hi<<4|v)
	}
	switch {
	case digits == 0:
		return nil, fmt.Errorf("%w: no hex digits", ErrInvalidProviderKey)
	case half:
		return nil, fmt.Errorf("%w: odd number of hex digits (%d)", ErrInvalidProviderKey, digits)
	case len(pk) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidProviderKey, len(pk), ed25519.PublicKeySize)
	}
	return pk, nil
}

// FormatProviderKey writes pk the way dnscrypt-proxy 1.x prints provider
// keys: upper-case hexadecimal in groups of two bytes separated by colons,
// "E801:B84E:...:324D" (16 groups for a 32-byte key).
func FormatProviderKey(pk ed25519.PublicKey) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, len(pk)*5/2)
	for i, c := range pk {
		if i > 0 && i%2 == 0 {
			b = append(b, ':')
		}
		b = append(b, digits[c>>4], digits[c&0x0f])
	}
	return string(b)
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

// isKeySeparator reports the characters 1.x ignores between the bytes of a
// provider key (dnscrypt_fingerprint_to_key: ": \t\r\n").
func isKeySeparator(c byte) bool {
	switch c {
	case ':', ' ', '\t', '\r', '\n', '\v', '\f':
		return true
	}
	return false
}
