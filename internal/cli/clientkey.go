package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

// ErrClientKey reports a --client-key file that does not hold a key.
var ErrClientKey = errors.New("cli: unsupported client key format")

// maxClientKeyFile bounds the bytes read from a --client-key file.
const maxClientKeyFile = 4096

// ParseClientKey parses the contents of a --client-key file. As in
// dnscrypt-proxy 1.x, it is hexadecimal text, upper or lower case, in
// which ':', ' ' and '-' between bytes are ignored: the two bytes 01 01
// then the 32-byte X25519 secret key, 68 digits in all. A bare secret key
// of 64 digits is accepted too, and so is white space at the end (a final
// newline). The public key is derived from the secret key.
func ParseClientKey(data []byte) (*dnscrypt.KeyPair, error) {
	// Trailing white space, newline included.
	for len(data) > 0 && (isSpace(data[len(data)-1]) || data[len(data)-1] == '\n') {
		data = data[:len(data)-1]
	}
	key, err := stamps.DecodeKeyHex(string(data), ":- ", 2+dnscrypt.KeySize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClientKey, err)
	}
	switch len(key) {
	case 2 + dnscrypt.KeySize:
		if key[0] != 1 || key[1] != 1 {
			return nil, fmt.Errorf("%w: 34 bytes that do not start with 01 01", ErrClientKey)
		}
		key = key[2:]
	case dnscrypt.KeySize:
	default:
		return nil, fmt.Errorf("%w: %d bytes, want 34 (01 01 + key) or 32 (key)", ErrClientKey, len(key))
	}
	var sk [dnscrypt.KeySize]byte
	copy(sk[:], key)
	clear(key)
	if sk == [dnscrypt.KeySize]byte{} {
		return nil, fmt.Errorf("%w: the key is all zeros", ErrClientKey)
	}
	return dnscrypt.NewKeyPair(&sk)
}

// readClientKeyFrom reads and parses a --client-key file.
func readClientKeyFrom(r io.Reader) (*dnscrypt.KeyPair, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxClientKeyFile+1))
	defer clear(data)
	if err != nil {
		return nil, err
	}
	if len(data) > maxClientKeyFile {
		return nil, fmt.Errorf("%w: file larger than %d bytes", ErrClientKey, maxClientKeyFile)
	}
	return ParseClientKey(data)
}
