package stamps

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Callers branch on them with errors.Is;
// the wrapped text says what exactly was wrong.
var (
	// ErrInvalidStamp reports an sdns:// string that does not decode to a
	// usable server stamp. The error from go-dnsstamps, if any, is wrapped too.
	ErrInvalidStamp = errors.New("stamps: invalid stamp")
	// ErrInvalidProviderKey reports a provider public key that is not
	// exactly 32 bytes written in hexadecimal.
	ErrInvalidProviderKey = errors.New("stamps: invalid provider key")
	// ErrInvalidAddress reports a resolver address that is not an IP
	// literal with an optional port.
	ErrInvalidAddress = errors.New("stamps: invalid address")
	// ErrInvalidProviderName reports an empty provider name, or one longer
	// than the 255 bytes a stamp can hold. Whether a name can be asked for
	// is the DNSCrypt protocol's rule, dnscrypt.CheckProviderName, which
	// the runtime applies.
	ErrInvalidProviderName = errors.New("stamps: invalid provider name")
	// ErrInvalidList reports a resolvers list that cannot be used at all
	// (no header, a required column missing, too large), or a row that is
	// malformed as CSV.
	ErrInvalidList = errors.New("stamps: invalid resolvers list")
	// ErrMissingField reports a resolvers list row with an empty required
	// field.
	ErrMissingField = errors.New("stamps: missing field")
	// ErrNotFound reports that no resolver has the requested name.
	ErrNotFound = errors.New("stamps: resolver not found")
	// ErrNoCandidate reports that no resolver qualifies for a random choice.
	ErrNoCandidate = errors.New("stamps: no suitable resolver for a random choice")
)

// RowError reports a resolvers list row that was skipped. [ParseCSV] joins
// one RowError per bad row; use errors.As to get at them.
type RowError struct {
	Line int    // 1-based line on which the row starts
	Name string // value of the Name column, possibly empty
	Err  error  // what was wrong, wrapping one of the package's sentinels
}

func (e *RowError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: resolver %q: %v", e.Line, e.Name, e.Err)
}

func (e *RowError) Unwrap() error { return e.Err }
