package certs

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// TestCreateLayout checks every byte Create writes against the layout of
// the specification (reference §1.3). The signature is a known answer:
// Ed25519 is deterministic, and TestCreateMatchesDnsdist checks the same
// code against certificates signed by dnsdist.
func TestCreateLayout(t *testing.T) {
	tmpl := Template{
		Construction: dnscrypt.XChaCha20Poly1305,
		ClientMagic:  [8]byte{'q', '6', 'f', 'n', 'v', 'W', 'j', '8'},
		Serial:       0x01020304,
		NotBefore:    time.Unix(0x6553f100, 0),
		NotAfter:     time.Unix(0x65554280, 999_999_999), // sub-second part dropped
		Extensions:   []byte("ext"),
	}
	copy(tmpl.ResolverPK[:], seq(0xa0, 32))
	got, err := Create(tmpl, testSK)
	if err != nil {
		t.Fatal(err)
	}
	fields := []struct {
		name     string
		off, end int
		want     string
	}{
		{"magic", 0, 4, "444e5343"},
		{"es-version", 4, 6, "0002"},
		{"minor", 6, 8, "0000"},
		{"signature", 8, 72, testSignatureHex},
		{"resolver pk", 72, 104, "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"},
		{"client magic", 104, 112, "7136666e76576a38"},
		{"serial", 112, 116, "01020304"},
		{"ts-start", 116, 120, "6553f100"},
		{"ts-end", 120, 124, "65554280"},
		{"extensions", 124, 127, "657874"},
	}
	if len(got) != 127 {
		t.Fatalf("got %d bytes, want 127", len(got))
	}
	for _, f := range fields {
		if g := hex.EncodeToString(got[f.off:f.end]); g != f.want {
			t.Errorf("%s: got %s, want %s", f.name, g, f.want)
		}
	}
	if !ed25519.Verify(testPK, got[72:], got[8:72]) {
		t.Errorf("signature does not cover bytes 72..end")
	}

	c, err := Verify(got, testPK, time.Unix(0x65554280, 0))
	if err != nil {
		t.Fatal(err)
	}
	if c.Construction != tmpl.Construction || c.ResolverPK != tmpl.ResolverPK || c.ClientMagic != tmpl.ClientMagic ||
		c.Serial != tmpl.Serial || !c.NotBefore.Equal(time.Unix(0x6553f100, 0)) || !c.NotAfter.Equal(time.Unix(0x65554280, 0)) {
		t.Errorf("got %+v, want the template's fields", c)
	}
	if c.NotBefore.Location() != time.UTC || c.NotAfter.Location() != time.UTC {
		t.Errorf("times not in UTC: %v %v", c.NotBefore, c.NotAfter)
	}
	if !bytes.Equal(c.Raw, got) || !bytes.Equal(c.Extensions(), []byte("ext")) {
		t.Errorf("got raw %x ext %x", c.Raw, c.Extensions())
	}
	got[0] = 'X' // Raw is a private copy
	if c.Raw[0] != 'D' {
		t.Errorf("Raw shares memory with the input")
	}
}

// testSignatureHex is the signature of TestCreateLayout's certificate,
// computed independently with Python's cryptography package:
// Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))).sign(cert[72:]).
const testSignatureHex = "f79a8ee25bd43d3f48db9d3020f75e96a038af10e7ae8881563a48730deb0711" +
	"698b04f952533cbbc40425a7e33fc7e3f20c33a8ae5d7aeff45b3612f8351b07"

func TestCreateErrors(t *testing.T) {
	tmpl := testTemplate(1, dnscrypt.XSalsa20Poly1305)
	if _, err := Create(tmpl, testSK[:32]); err == nil {
		t.Errorf("short private key: got nil error")
	}
	for _, tc := range []struct {
		name     string
		from, to time.Time
	}{
		{"before 1970", time.Unix(-1, 0), testTill},
		{"after 2106", testFrom, time.Unix(1<<32, 0)},
	} {
		tm := tmpl
		tm.NotBefore, tm.NotAfter = tc.from, tc.to
		if _, err := Create(tm, testSK); err == nil {
			t.Errorf("%s: got nil error", tc.name)
		}
	}
	tm := tmpl
	tm.NotBefore, tm.NotAfter = time.Unix(0, 0), time.Unix(1<<32-1, 0)
	b, err := Create(tm, testSK)
	if err != nil {
		t.Fatalf("full uint32 range: %v", err)
	}
	if c, err := Verify(b, testPK, time.Unix(1<<32-1, 0)); err != nil || c.NotAfter.Unix() != 1<<32-1 {
		t.Errorf("got %v, %v; want valid until 2106", c, err)
	}
}

func TestVerifyErrors(t *testing.T) {
	valid := testTemplate(7, dnscrypt.XSalsa20Poly1305)
	with := func(f func(*Template)) []byte {
		tm := valid
		f(&tm)
		return mustCreate(t, tm)
	}
	good := mustCreate(t, valid)
	patch := func(off int, b ...byte) []byte {
		c := bytes.Clone(good)
		copy(c[off:], b)
		return c
	}
	tests := []struct {
		name string
		cert []byte
		pk   ed25519.PublicKey
		now  time.Time
		want []error // all must match
	}{
		{"empty", nil, testPK, testNow, []error{ErrShort, ErrFormat}},
		{"123 bytes", good[:123], testPK, testNow, []error{ErrShort, ErrFormat}},
		{"bad magic", patch(0, 'd'), testPK, testNow, []error{ErrBadMagic, ErrFormat}},
		{"es-version 0", patch(4, 0, 0), testPK, testNow, []error{ErrUnsupported}},
		{"es-version 3", patch(4, 0, 3), testPK, testNow, []error{ErrUnsupported}},
		{"es-version 0x0101", patch(4, 1, 1), testPK, testNow, []error{ErrUnsupported}},
		{"other provider key", good, otherSK.Public().(ed25519.PublicKey), testNow, []error{ErrSignature}},
		{"signed by another key", func() []byte { b, _ := Create(valid, otherSK); return b }(), testPK, testNow, []error{ErrSignature}},
		{"nil provider key", good, nil, testNow, []error{ErrProviderKey}},
		{"31-byte provider key", good, testPK[:31], testNow, []error{ErrProviderKey}},
		{"start == end", with(func(t *Template) { t.NotAfter = t.NotBefore }), testPK, testFrom, []error{ErrBadValidity, ErrFormat}},
		{"start > end", with(func(t *Template) { t.NotBefore, t.NotAfter = t.NotAfter, t.NotBefore }), testPK, testNow, []error{ErrBadValidity, ErrFormat}},
		{"low-order resolver key", with(func(t *Template) { t.ResolverPK = [32]byte{1} }), testPK, testNow, []error{dnscrypt.ErrWeakKey, ErrFormat}},
		{"expired", good, testPK, testTill.Add(time.Second), []error{ErrExpired}},
		{"expired long ago", good, testPK, testTill.Add(1000 * time.Hour), []error{ErrExpired}},
		{"not yet valid", good, testPK, testFrom.Add(-time.Nanosecond), []error{ErrNotYetValid}},
		{"not yet valid by a year", good, testPK, testFrom.AddDate(-1, 0, 0), []error{ErrNotYetValid}},
	}
	all := []error{ErrShort, ErrFormat, ErrBadMagic, ErrUnsupported, ErrSignature, ErrProviderKey,
		ErrBadValidity, ErrExpired, ErrNotYetValid, ErrNoValidCert}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Verify(tc.cert, tc.pk, tc.now)
			if c != nil || err == nil {
				t.Fatalf("got %v, %v; want an error", c, err)
			}
			for _, want := range all {
				matches := false
				for _, w := range tc.want {
					matches = matches || w == want
				}
				if errors.Is(err, want) != matches {
					t.Errorf("errors.Is(%q, %q) = %v, want %v", err, want, !matches, matches)
				}
			}
			if !strings.HasPrefix(err.Error(), "certs: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestVerifyValidityBounds(t *testing.T) {
	good := mustCreate(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	for _, tc := range []struct {
		now     time.Time
		wantErr error
	}{
		{testFrom.Add(-time.Second), ErrNotYetValid},
		{testFrom.Add(-time.Nanosecond), ErrNotYetValid},
		{testFrom, nil},
		{testNow, nil},
		{testTill, nil}, // ts-end is inclusive
		{testTill.Add(999 * time.Millisecond), nil},
		{testTill.Add(time.Second), ErrExpired},
	} {
		_, err := Verify(good, testPK, tc.now)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("now %s: got %v, want %v", tc.now.Format(time.RFC3339Nano), err, tc.wantErr)
		}
	}
}

func TestValidityError(t *testing.T) {
	good := mustCreate(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	for _, tc := range []struct {
		now     time.Time
		expired bool
		msg     string
	}{
		{testTill.Add(time.Hour), true, "certs: expired at 2023-11-15T21:13:20Z (now 2023-11-15T22:13:20Z)"},
		{testFrom.Add(-time.Hour), false, "certs: not valid before 2023-11-14T21:13:20Z (now 2023-11-14T20:13:20Z)"},
	} {
		_, err := Verify(good, testPK, tc.now.In(time.FixedZone("X", 3600)))
		ve, ok := errors.AsType[*ValidityError](err)
		if !ok {
			t.Fatalf("got %T %v, want *ValidityError", err, err)
		}
		if ve.Expired != tc.expired || !ve.Now.Equal(tc.now) {
			t.Errorf("got Expired %v Now %v, want %v %v", ve.Expired, ve.Now, tc.expired, tc.now)
		}
		if ve.Cert == nil || ve.Cert.Serial != 1 || !bytes.Equal(ve.Cert.Raw, good) {
			t.Errorf("got Cert %+v, want the verified certificate", ve.Cert)
		}
		if err.Error() != tc.msg {
			t.Errorf("got %q, want %q", err, tc.msg)
		}
	}
}

// TestVerifyTamper flips every bit of the signature and of every signed
// byte; each must break the signature. The unsigned header bytes give their
// own errors, except the minor version, which is not checked.
func TestVerifyTamper(t *testing.T) {
	tm := testTemplate(3, dnscrypt.XChaCha20Poly1305)
	tm.Extensions = []byte{1, 2, 3, 4}
	good := mustCreate(t, tm)
	for i := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			c, err := Verify(b, testPK, testNow)
			var want error
			switch {
			case i < 4:
				want = ErrBadMagic
			case i < 6:
				want = ErrUnsupported // 0x0002 with one bit flipped is never 1 or 2
			case i < 8:
				want = nil // minor version: not signed, not checked
			default:
				want = ErrSignature
			}
			if want == nil {
				if err != nil {
					t.Errorf("byte %d bit %d: got %v, want success", i, bit, err)
				}
				continue
			}
			if c != nil || !errors.Is(err, want) {
				t.Errorf("byte %d bit %d: got %v, %v; want %v", i, bit, c, err, want)
			}
		}
	}
}

func TestBest(t *testing.T) {
	s1e1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	s1e2 := mustCert(t, testTemplate(1, dnscrypt.XChaCha20Poly1305))
	s2e1 := mustCert(t, testTemplate(2, dnscrypt.XSalsa20Poly1305))
	s2e1b := mustCert(t, testTemplate(2, dnscrypt.XSalsa20Poly1305)) // equal, another pointer
	big := mustCert(t, testTemplate(0xffffffff, dnscrypt.XSalsa20Poly1305))
	for _, tc := range []struct {
		name string
		in   []*Cert
		want *Cert
	}{
		{"nil", nil, nil},
		{"only nils", []*Cert{nil, nil}, nil},
		{"one", []*Cert{s1e1}, s1e1},
		{"higher serial wins", []*Cert{s1e2, s2e1}, s2e1},
		{"higher serial wins, reversed", []*Cert{s2e1, s1e2}, s2e1},
		{"tie goes to higher es-version", []*Cert{s1e1, s1e2}, s1e2},
		{"tie goes to higher es-version, reversed", []*Cert{s1e2, s1e1}, s1e2},
		{"equal: first", []*Cert{s2e1, s2e1b}, s2e1},
		{"equal: first, reversed", []*Cert{s2e1b, s2e1}, s2e1b},
		{"nils skipped", []*Cert{nil, s1e1, nil}, s1e1},
		{"max serial (no wrap-around)", []*Cert{s2e1, big, s1e1}, big},
	} {
		if got := Best(tc.in); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if Better(s1e1, s1e1) || !Better(s1e2, s1e1) || Better(s1e1, s1e2) || !Better(s2e1, s1e2) {
		t.Errorf("Better is not a strict order")
	}
}

func TestSelect(t *testing.T) {
	mk := func(serial uint32, es dnscrypt.Construction, f func(*Template)) []byte {
		tm := testTemplate(serial, es)
		if f != nil {
			f(&tm)
		}
		return mustCreate(t, tm)
	}
	future := func(tm *Template) { tm.NotBefore, tm.NotAfter = testNow.Add(time.Hour), testNow.Add(48*time.Hour) }
	past := func(tm *Template) { tm.NotBefore, tm.NotAfter = testNow.Add(-48*time.Hour), testNow.Add(-time.Hour) }
	records := [][]byte{
		mk(100, 3, nil), // unknown es-version (X-Wing): skipped
		mk(1, dnscrypt.XSalsa20Poly1305, nil),
		mk(2, dnscrypt.XSalsa20Poly1305, nil),
		mk(50, dnscrypt.XSalsa20Poly1305, past), // expired
		func() []byte { b := mk(60, dnscrypt.XSalsa20Poly1305, nil); b[100] ^= 1; return b }(),
		mk(9, dnscrypt.XSalsa20Poly1305, future),  // not yet valid
		mk(2, dnscrypt.XChaCha20Poly1305, nil),    // same serial, higher es
		[]byte("v=spf1 -all"),                     // some other TXT record
		mk(2, dnscrypt.XSalsa20Poly1305, nil)[:0], // empty record
	}
	serials := func(cs []*Cert) (out []uint32) {
		for _, c := range cs {
			out = append(out, c.Serial*10+uint32(c.Construction))
		}
		return out
	}
	for _, tc := range []struct {
		ignoreNotBefore bool
		want            []uint32 // serial*10 + es
	}{
		{false, []uint32{22, 21, 11}},
		{true, []uint32{91, 22, 21, 11}},
	} {
		cs, err := Select(records, testPK, testNow, tc.ignoreNotBefore)
		if err != nil {
			t.Fatal(err)
		}
		if got := serials(cs); !slices.Equal(got, tc.want) {
			t.Errorf("ignoreNotBefore %v: got %v, want %v", tc.ignoreNotBefore, got, tc.want)
		}
	}
	// Equal certificates keep the order of the records.
	a, b := mk(5, dnscrypt.XSalsa20Poly1305, nil), mk(5, dnscrypt.XSalsa20Poly1305, nil)
	b = append(b, 0) // an extension makes it another certificate; the signature breaks
	a2 := mk(5, dnscrypt.XSalsa20Poly1305, func(tm *Template) { tm.Extensions = []byte{9} })
	cs, err := Select([][]byte{a, b, a2}, testPK, testNow, false)
	if err != nil || len(cs) != 2 || !bytes.Equal(cs[0].Raw, a) || !bytes.Equal(cs[1].Raw, a2) {
		t.Errorf("duplicate serials: got %v, %v; want a, then a2", cs, err)
	}
}

func TestSelectNoneValid(t *testing.T) {
	expired := testTemplate(1, dnscrypt.XSalsa20Poly1305)
	expired.NotAfter = testFrom.Add(time.Minute)
	future := testTemplate(2, dnscrypt.XSalsa20Poly1305)
	future.NotBefore = testNow.Add(time.Minute)
	records := [][]byte{
		mustCreate(t, expired),
		mustCreate(t, future),
		mustCreate(t, testTemplate(3, 3)),
		[]byte("DNSC"),
	}
	_, err := Select(records, testPK, testNow, false)
	for _, want := range []error{ErrNoValidCert, ErrExpired, ErrNotYetValid, ErrUnsupported, ErrShort} {
		if !errors.Is(err, want) {
			t.Errorf("got %v, want it to match %v", err, want)
		}
	}
	for _, want := range []string{"certs: no valid certificate: ", "record 0: certs: expired at ", "record 1: certs: not valid before",
		"record 2: certs: unsupported es-version 3", "record 3: certs: malformed certificate: too short (4 bytes)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
	// Expired stays rejected with ignoreNotBefore.
	cs, err := Select(records, testPK, testNow, true)
	if err != nil || len(cs) != 1 || cs[0].Serial != 2 {
		t.Errorf("ignoreNotBefore: got %v, %v; want only serial 2", cs, err)
	}
	if _, err := Select(records[:1], testPK, testNow, true); !errors.Is(err, ErrExpired) {
		t.Errorf("ignoreNotBefore with only an expired cert: got %v, want ErrExpired", err)
	}

	for _, recs := range [][][]byte{nil, {}} {
		if cs, err := Select(recs, testPK, testNow, false); cs != nil || !errors.Is(err, ErrNoValidCert) {
			t.Errorf("no records: got %v, %v", cs, err)
		}
	}
	if _, err := Select(records, nil, testNow, false); !errors.Is(err, ErrProviderKey) {
		t.Errorf("nil key: got %v, want ErrProviderKey", err)
	}
}

func TestFingerprint(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{seq(0xe0, 32), "E0E1:E2E3:E4E5:E6E7:E8E9:EAEB:ECED:EEEF:F0F1:F2F3:F4F5:F6F7:F8F9:FAFB:FCFD:FEFF"},
		{make([]byte, 32), "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000"},
		{[]byte{0xab, 0xcd, 0xef}, "ABCD:EF"},
		{nil, ""},
	} {
		if got := Fingerprint(tc.in); got != tc.want {
			t.Errorf("Fingerprint(%x): got %s, want %s", tc.in, got, tc.want)
		}
	}
}

// BenchmarkVerify measures Verify against its floor, the bare Ed25519
// check, in the same run.
func BenchmarkVerify(b *testing.B) {
	cert := mustCreate(b, testTemplate(1, dnscrypt.XChaCha20Poly1305))
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Verify(cert, testPK, testNow); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ed25519.Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !ed25519.Verify(testPK, cert[72:], cert[8:72]) {
				b.Fatal("bad signature")
			}
		}
	})
}

func BenchmarkSelect(b *testing.B) {
	records := [][]byte{
		mustCreate(b, testTemplate(1, dnscrypt.XSalsa20Poly1305)),
		mustCreate(b, testTemplate(2, dnscrypt.XChaCha20Poly1305)),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Select(records, testPK, testNow, false); err != nil {
			b.Fatal(err)
		}
	}
}
