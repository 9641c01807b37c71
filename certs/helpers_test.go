package certs

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// Fixed keys and times, so that tests are deterministic.
var (
	testSK   = ed25519.NewKeyFromSeed(seq(1, 32))
	testPK   = testSK.Public().(ed25519.PublicKey)
	otherSK  = ed25519.NewKeyFromSeed(seq(101, 32))
	testNow  = time.Unix(1700000000, 0).UTC() // 2023-11-14T22:13:20Z
	testFrom = testNow.Add(-time.Hour)
	testTill = testNow.Add(23 * time.Hour)
)

// seq returns n bytes counting up from start.
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// testTemplate is a valid template at testNow.
func testTemplate(serial uint32, es dnscrypt.Construction) Template {
	t := Template{
		Construction: es,
		Serial:       serial,
		NotBefore:    testFrom,
		NotAfter:     testTill,
		ClientMagic:  [8]byte{'m', 'a', 'g', 'i', 'c', byte(serial), byte(es), 1},
	}
	copy(t.ResolverPK[:], seq(byte(serial)*7+byte(es), 32))
	return t
}

// mustCreate signs t with testSK.
func mustCreate(tb testing.TB, t Template) []byte {
	tb.Helper()
	b, err := Create(t, testSK)
	if err != nil {
		tb.Fatalf("Create: %v", err)
	}
	return b
}

// mustCert returns the verified certificate of t, valid at testNow.
func mustCert(tb testing.TB, t Template) *Cert {
	tb.Helper()
	c, err := Verify(mustCreate(tb, t), testPK, testNow)
	if err != nil {
		tb.Fatalf("Verify: %v", err)
	}
	return c
}

// exampleCert is a certificate for examples: serial 7, es-version 2, valid
// on 2026-01-01 and 2026-01-02.
func exampleCert() *Cert {
	b, err := Create(Template{
		Construction: dnscrypt.XChaCha20Poly1305,
		ResolverPK:   [32]byte(seq(0x40, 32)),
		ClientMagic:  [8]byte{'m', 'y', 'm', 'a', 'g', 'i', 'c', '!'},
		Serial:       7,
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC),
	}, testSK)
	if err != nil {
		panic(err)
	}
	c, err := Verify(b, testPK, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	if err != nil {
		panic(err)
	}
	return c
}
