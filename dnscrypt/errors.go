package dnscrypt

import "errors"

// Errors returned by this package. Callers branch on them with errors.Is.
var (
	// ErrWeakKey reports a peer public key of low order: the X25519 result
	// would be all zeros, so the "shared" key would be public.
	ErrWeakKey = errors.New("dnscrypt: weak public key")
	// ErrUnsupported reports an encryption system this package does not
	// implement.
	ErrUnsupported = errors.New("dnscrypt: unsupported encryption system")
	// ErrShort reports a packet or message below its minimum size.
	ErrShort = errors.New("dnscrypt: packet too short")
	// ErrLong reports a packet or message above its maximum size.
	ErrLong = errors.New("dnscrypt: packet too long")
	// ErrPaddedLen reports a padded length that cannot hold the message.
	ErrPaddedLen = errors.New("dnscrypt: invalid padded length")
	// ErrMagic reports a packet that does not start with the expected magic.
	ErrMagic = errors.New("dnscrypt: wrong magic")
	// ErrNonce reports a response whose nonce does not echo the query's.
	ErrNonce = errors.New("dnscrypt: nonce mismatch")
	// ErrKey reports a query sealed for another client key than the one given.
	ErrKey = errors.New("dnscrypt: client key mismatch")
	// ErrAuth reports a packet whose Poly1305 tag does not verify.
	ErrAuth = errors.New("dnscrypt: authentication failed")
	// ErrPadding reports decrypted data without well-formed padding.
	ErrPadding = errors.New("dnscrypt: bad padding")
	// ErrOverlap reports a dst whose spare capacity, where the result
	// goes, shares memory with the input in a way the function does not
	// support (each function's doc says which). It is a caller's bug,
	// reported before anything is written; x/crypto's secretbox panics
	// instead.
	ErrOverlap = errors.New("dnscrypt: invalid buffer overlap")
	// ErrProviderName reports a provider name that cannot be asked for in
	// a certificate query; see [CheckProviderName].
	ErrProviderName = errors.New("dnscrypt: bad provider name")
)
