package certs

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by [Verify], [Select], [Fetch] and [Refresher]. Malformed
// certificates (ErrShort, ErrBadMagic, ErrBadValidity)
// also match ErrFormat with [errors.Is].
var (
	// ErrNoValidCert: no offered certificate survived verification. Select
	// and Fetch wrap it together with the reason for every record.
	ErrNoValidCert = errors.New("certs: no valid certificate")
	// ErrSignature: the provider key did not sign the certificate.
	ErrSignature = errors.New("certs: signature mismatch")
	// ErrExpired: the certificate's ts-end lies before now. See [ValidityError].
	ErrExpired = errors.New("certs: expired")
	// ErrNotYetValid: the certificate's ts-start lies after now. See [ValidityError].
	ErrNotYetValid = errors.New("certs: not yet valid")
	// ErrUnsupported: the es-version is not one [dnscrypt.Construction.Supported] knows.
	ErrUnsupported = errors.New("certs: unsupported es-version")
	// ErrProviderKey: the provider public key is not 32 bytes long.
	ErrProviderKey = errors.New("certs: provider key must be 32 bytes")

	// ErrFormat: the certificate is malformed.
	ErrFormat = errors.New("certs: malformed certificate")
	// ErrShort: fewer than the 124 bytes of a certificate without extensions.
	ErrShort = fmt.Errorf("%w: too short", ErrFormat)
	// ErrBadMagic: the certificate does not start with "DNSC".
	ErrBadMagic = fmt.Errorf("%w: bad magic", ErrFormat)
	// ErrBadValidity: ts-start is not before ts-end.
	ErrBadValidity = fmt.Errorf("%w: ts-start not before ts-end", ErrFormat)

	// ErrBadResponse: the answer to a certificate query is unusable (not
	// NOERROR, or not about the question asked).
	ErrBadResponse = errors.New("certs: bad response")
)

// ValidityError reports a certificate whose signature and format are good
// but whose validity period does not contain now. It carries the verified
// certificate, so a caller honouring dnscrypt-proxy 1.x --ignore-timestamps
// (accept a certificate that is not valid yet; still reject an expired one)
// can use it. It matches [ErrExpired] or [ErrNotYetValid] with [errors.Is].
type ValidityError struct {
	Cert    *Cert     // verified; only its validity is wrong
	Now     time.Time // the time it was checked against
	Expired bool      // true: Now is after Cert.NotAfter; false: before Cert.NotBefore
}

func (e *ValidityError) Error() string {
	now := e.Now.UTC().Format(time.RFC3339)
	if e.Expired {
		return fmt.Sprintf("certs: expired at %s (now %s)", e.Cert.NotAfter.Format(time.RFC3339), now)
	}
	return fmt.Sprintf("certs: not valid before %s (now %s)", e.Cert.NotBefore.Format(time.RFC3339), now)
}

// Unwrap returns [ErrExpired] or [ErrNotYetValid].
func (e *ValidityError) Unwrap() error {
	if e.Expired {
		return ErrExpired
	}
	return ErrNotYetValid
}
