package dnscrypt

import (
	"fmt"
	"strings"
)

// Limits of a provider name, from RFC 1035 section 2.3.4.
const (
	// MaxLabelLen is the longest label of a domain name.
	MaxLabelLen = 63
	// MaxProviderNameLen is the longest provider name without its final
	// dot: 253 characters are 255 bytes in wire form (a length byte per
	// label, and the root's).
	MaxProviderNameLen = 253
)

// CheckProviderName reports whether name can be a provider name, the name
// a client asks for in the TXT query that fetches the resolver's
// certificates (e.g. "2.dnscrypt-cert.example.com"). name must be a domain
// name other than the root, a final dot optional: labels of 1 to
// [MaxLabelLen] bytes, at most [MaxProviderNameLen] bytes in all without
// the final dot. It must be printable ASCII without spaces, and without
// the backslash, which DNS software reads as an escape: the name asked for
// is then exactly the name given.
//
// It is the one rule for provider names. certs.Fetch applies it to what it
// sends, and the runtime to every resolver it is given (stamps, 1.x
// options, resolvers lists), so a bad name fails at once rather than at
// every certificate fetch. Errors wrap [ErrProviderName].
func CheckProviderName(name string) error {
	if i := strings.IndexFunc(name, badNameRune); i >= 0 {
		return fmt.Errorf("%w: %q: space, control, non-ASCII or backslash character at offset %d", ErrProviderName, name, i)
	}
	s := strings.TrimSuffix(name, ".")
	if s == "" {
		return fmt.Errorf("%w: %q: empty, or the root", ErrProviderName, name)
	}
	if len(s) > MaxProviderNameLen {
		return fmt.Errorf("%w: %d bytes long, limit %d", ErrProviderName, len(s), MaxProviderNameLen)
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > MaxLabelLen {
			return fmt.Errorf("%w: %q: a label of %d bytes, want 1 to %d", ErrProviderName, name, len(label), MaxLabelLen)
		}
	}
	return nil
}

// badNameRune reports runes that have no place in a provider name: control
// characters, space, non-ASCII, and the backslash.
func badNameRune(r rune) bool { return r <= ' ' || r >= 0x7f || r == '\\' }
