package certs

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// Magic starts every certificate.
const Magic = "DNSC"

// MinSize is the size of a certificate without extensions.
const MinSize = 124

// Layout of a certificate (all integers big-endian). The signature covers
// everything from offset signedStart to the end, extensions included.
const (
	offESVersion   = 4
	offMinor       = 6
	offSignature   = 8
	signedStart    = 72 // resolver public key
	offClientMagic = 104
	offSerial      = 112
	offTSStart     = 116
	offTSEnd       = 120
)

// Cert is a resolver certificate. [Verify], [Select] and [Fetch] return
// Certs only for certificates whose signature they verified, and hand out
// no unverified Cert. A Cert is immutable: do not modify it or its Raw
// bytes.
type Cert struct {
	Construction dnscrypt.Construction // es-version
	ResolverPK   [32]byte              // the resolver's short-term X25519 public key
	ClientMagic  [8]byte               // prefix of every query made with this certificate
	Serial       uint32
	// NotBefore and NotAfter are ts-start and ts-end, both inclusive, in
	// whole seconds, UTC.
	NotBefore, NotAfter time.Time
	// Raw is the whole certificate as received (a private copy),
	// extensions included.
	Raw []byte
}

// Extensions returns the signed bytes after the fixed fields; the current
// protocol defines none, so they are empty and unknown ones are ignored.
func (c *Cert) Extensions() []byte { return c.Raw[MinSize:] }

// ValidAt reports whether t lies within [NotBefore, NotAfter], compared in
// whole Unix seconds as the protocol does.
func (c *Cert) ValidAt(t time.Time) bool {
	s := t.Unix()
	return c.NotBefore.Unix() <= s && s <= c.NotAfter.Unix()
}

// Verify parses a certificate and verifies it against the provider's
// Ed25519 public key and the time now. It returns a [*Cert] only when the
// certificate is authentic, well formed and valid at now; there is no way to
// get an unverified Cert.
//
// Errors: [ErrProviderKey], [ErrShort], [ErrBadMagic], [ErrUnsupported]
// (an es-version this package cannot use), [ErrSignature],
// [ErrBadValidity], and a [*ValidityError] (matching
// [ErrExpired] or [ErrNotYetValid]) that carries the otherwise good Cert.
// The protocol minor version is not checked, as other clients do not.
func Verify(b []byte, providerPK ed25519.PublicKey, now time.Time) (*Cert, error) {
	if len(providerPK) != ed25519.PublicKeySize {
		return nil, ErrProviderKey
	}
	if len(b) < MinSize {
		return nil, fmt.Errorf("%w (%d bytes)", ErrShort, len(b))
	}
	if string(b[:offESVersion]) != Magic {
		return nil, ErrBadMagic
	}
	es := dnscrypt.Construction(binary.BigEndian.Uint16(b[offESVersion:]))
	if !es.Supported() {
		return nil, fmt.Errorf("%w %d", ErrUnsupported, uint16(es))
	}
	// Verify a private copy, so the bytes checked are the bytes kept.
	raw := bytes.Clone(b)
	if !ed25519.Verify(providerPK, raw[signedStart:], raw[offSignature:signedStart]) {
		return nil, ErrSignature
	}
	c := &Cert{
		Construction: es,
		Serial:       binary.BigEndian.Uint32(raw[offSerial:]),
		NotBefore:    unixTime(raw[offTSStart:]),
		NotAfter:     unixTime(raw[offTSEnd:]),
		Raw:          raw,
	}
	copy(c.ResolverPK[:], raw[signedStart:offClientMagic])
	copy(c.ClientMagic[:], raw[offClientMagic:offSerial])
	if !c.NotBefore.Before(c.NotAfter) {
		return nil, ErrBadValidity
	}
	// A low-order resolver key would make a shared key anyone knows (1.x:
	// "Suspicious public key").
	if err := dnscrypt.CheckPublicKey(&c.ResolverPK); err != nil {
		return nil, fmt.Errorf("%w: resolver public key: %w", ErrFormat, err)
	}
	if !c.ValidAt(now) {
		return nil, &ValidityError{Cert: c, Now: now, Expired: expired(c, now)}
	}
	return c, nil
}

func unixTime(b []byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint32(b)), 0).UTC()
}

// Better reports whether a is preferred over b: a higher serial, or the same
// serial and a higher es-version (the choice of dnscrypt-proxy 2).
func Better(a, b *Cert) bool { return compareCerts(a, b) < 0 }

// compareCerts orders best first.
func compareCerts(a, b *Cert) int {
	if c := cmp.Compare(b.Serial, a.Serial); c != 0 {
		return c
	}
	return cmp.Compare(b.Construction, a.Construction)
}

// Best returns the preferred certificate of cs: the highest serial, ties
// going to the higher es-version, and between equals the first. It ignores
// nil entries and returns nil if there is no certificate.
func Best(cs []*Cert) *Cert {
	var best *Cert
	for _, c := range cs {
		if c != nil && (best == nil || Better(c, best)) {
			best = c
		}
	}
	return best
}

// Select verifies every record (one TXT record each, its character-strings
// already concatenated) and returns the valid certificates, best first (see
// [Best]; equal ones keep the order of records). Records of unknown
// es-versions and invalid records are skipped.
//
// If ignoreNotBefore is set, a certificate that is not valid yet is accepted
// (dnscrypt-proxy 1.x --ignore-timestamps); an expired one never is.
//
// If no record is usable, the error wraps [ErrNoValidCert] and joins the
// reason for every record, each prefixed with its index.
func Select(records [][]byte, pk ed25519.PublicKey, now time.Time, ignoreNotBefore bool) ([]*Cert, error) {
	if len(pk) != ed25519.PublicKeySize {
		return nil, ErrProviderKey
	}
	var (
		valid   []*Cert
		reasons []error
	)
	for i, rec := range records {
		c, err := Verify(rec, pk, now)
		if ve, ok := errors.AsType[*ValidityError](err); ok && ignoreNotBefore && !ve.Expired {
			c, err = ve.Cert, nil
		}
		if err != nil {
			reasons = append(reasons, fmt.Errorf("record %d: %w", i, err))
			continue
		}
		valid = append(valid, c)
	}
	if len(valid) == 0 {
		if len(records) == 0 {
			return nil, fmt.Errorf("%w: no certificate offered", ErrNoValidCert)
		}
		return nil, fmt.Errorf("%w: %w", ErrNoValidCert, errors.Join(reasons...))
	}
	slices.SortStableFunc(valid, compareCerts)
	return valid, nil
}

// Fingerprint formats a key as dnscrypt-proxy 1.x logs it and takes it in
// --provider-key: upper-case hex in groups of four digits separated by
// colons, "4E1F:...:9A02" (16 groups for a 32-byte key).
func Fingerprint(key []byte) string {
	h := strings.ToUpper(hex.EncodeToString(key))
	var sb strings.Builder
	sb.Grow(len(h) + len(h)/4)
	for i := 0; i < len(h); i += 4 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i:min(i+4, len(h))])
	}
	return sb.String()
}
