package certs

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// Template holds the fields of a certificate for [Create].
type Template struct {
	Construction dnscrypt.Construction // es-version, written as is
	ResolverPK   [32]byte
	ClientMagic  [8]byte
	Serial       uint32
	// NotBefore and NotAfter become ts-start and ts-end; sub-second parts
	// are dropped. Both must lie within the uint32 Unix time range.
	NotBefore, NotAfter time.Time
	Extensions          []byte // signed, appended after the fixed fields
}

// Create builds and signs a certificate: the resolver side of the protocol,
// for in-process test resolvers and tests.
//
// Create encodes the template as given and checks only that it can be
// encoded: it writes unsupported es-versions, a forbidden client magic or
// a ts-start after ts-end, so tests can make authentic certificates that
// [Verify] must reject.
func Create(t Template, providerSK ed25519.PrivateKey) ([]byte, error) {
	if len(providerSK) != ed25519.PrivateKeySize {
		return nil, errors.New("certs: provider private key must be 64 bytes")
	}
	start, err := uint32Time(t.NotBefore)
	if err != nil {
		return nil, fmt.Errorf("not before: %w", err)
	}
	end, err := uint32Time(t.NotAfter)
	if err != nil {
		return nil, fmt.Errorf("not after: %w", err)
	}
	b := make([]byte, MinSize, MinSize+len(t.Extensions))
	copy(b, Magic)
	binary.BigEndian.PutUint16(b[offESVersion:], uint16(t.Construction))
	binary.BigEndian.PutUint16(b[offMinor:], 0)
	copy(b[signedStart:], t.ResolverPK[:])
	copy(b[offClientMagic:], t.ClientMagic[:])
	binary.BigEndian.PutUint32(b[offSerial:], t.Serial)
	binary.BigEndian.PutUint32(b[offTSStart:], start)
	binary.BigEndian.PutUint32(b[offTSEnd:], end)
	b = append(b, t.Extensions...)
	copy(b[offSignature:], ed25519.Sign(providerSK, b[signedStart:]))
	return b, nil
}

func uint32Time(t time.Time) (uint32, error) {
	s := t.Unix()
	if s < 0 || s > math.MaxUint32 {
		return 0, fmt.Errorf("certs: time %s outside the certificate range", t.UTC().Format(time.RFC3339))
	}
	return uint32(s), nil
}
