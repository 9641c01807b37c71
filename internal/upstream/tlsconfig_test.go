package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// testCert is a certificate and its key, made for a test.
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (c testCert) pin() [32]byte { return sha256.Sum256(c.cert.RawTBSCertificate) }

// makeCert makes a certificate for names (a CA if names is empty), valid
// from notBefore for a day, signed by parent (self-signed if nil).
func makeCert(t testing.TB, cn string, names []string, notBefore time.Time, parent *testCert) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(24 * time.Hour),
		DNSNames:     names,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(names) == 0 {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{c, key}
}

// TestVerifyPinned: the server's own certificate pinned is enough (valid
// at the time); a pinned CA must have issued the server's certificate,
// for the name. A chain that only carries a copy of a pinned CA, as
// anyone can present, is refused.
func TestVerifyPinned(t *testing.T) {
	now := time.Now()
	day := now.Add(-time.Hour)
	ca := makeCert(t, "Pinned CA", nil, day, nil)
	inter := makeCert(t, "Intermediate", nil, day, &ca)
	leaf := makeCert(t, "dns.example", []string{"dns.example"}, day, &inter)
	direct := makeCert(t, "dns.example", []string{"dns.example"}, day, &ca)
	selfSigned := makeCert(t, "self", []string{"other.example"}, day, nil)
	old := makeCert(t, "old", []string{"dns.example"}, now.Add(-48*time.Hour), nil)
	rogueCA := makeCert(t, "Rogue CA", nil, day, nil)
	rogue := makeCert(t, "dns.example", []string{"dns.example"}, day, &rogueCA)

	chain := func(cs ...testCert) []*x509.Certificate {
		var out []*x509.Certificate
		for _, c := range cs {
			out = append(out, c.cert)
		}
		return out
	}
	pins := func(cs ...testCert) [][32]byte {
		var out [][32]byte
		for _, c := range cs {
			out = append(out, c.pin())
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		pins  [][32]byte
		host  string
		ok    bool
	}{
		{"leaf pinned", chain(leaf, inter, ca), pins(leaf), "dns.example", true},
		{"self-signed leaf pinned, other name", chain(selfSigned), pins(selfSigned), "dns.example", true},
		{"intermediate pinned", chain(leaf, inter), pins(inter), "dns.example", true},
		{"root pinned, sent", chain(leaf, inter, ca), pins(ca), "dns.example", true},
		{"root pinned, one of two pins", chain(direct, ca), pins(rogueCA, ca), "dns.example", true},
		{"no pin matches", chain(leaf, inter, ca), pins(rogueCA), "dns.example", false},
		{"no certificate", nil, pins(leaf), "dns.example", false},
		{"pinned leaf expired", chain(old), pins(old), "dns.example", false},
		{"CA pinned, wrong name", chain(leaf, inter, ca), pins(ca), "other.example", false},
		{"CA pinned, leaf of another CA", chain(rogue, ca), pins(ca), "dns.example", false},
		{"intermediate pinned, leaf of another CA", chain(rogue, inter, ca), pins(inter), "dns.example", false},
		{"CA pinned, broken link", chain(leaf, ca), pins(ca), "dns.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyPinned(tc.chain, tc.pins, tc.host, now)
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrCertificate) {
				t.Errorf("got %v, want ErrCertificate", err)
			}
		})
	}
}

// TestClientTLSConfig: TLS 1.2 at least, the server name, ALPN; sessions
// resumed directly but never through a proxy; pins replace the system's
// roots.
func TestClientTLSConfig(t *testing.T) {
	for _, proxied := range []bool{false, true} {
		cfg := clientTLSConfig("dns.example", nil, proxied, []string{"h2"}, time.Now)
		if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "dns.example" || len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "h2" {
			t.Errorf("proxied %v: %+v", proxied, cfg)
		}
		if cfg.InsecureSkipVerify || cfg.VerifyConnection != nil {
			t.Errorf("proxied %v: without pins, verification is not the default", proxied)
		}
		if resumes := !cfg.SessionTicketsDisabled && cfg.ClientSessionCache != nil; resumes == proxied {
			t.Errorf("proxied %v: session resumption %v", proxied, resumes)
		}
	}
	cfg := clientTLSConfig("dns.example", [][32]byte{{1}}, true, nil, time.Now)
	if !cfg.InsecureSkipVerify || cfg.VerifyConnection == nil {
		t.Error("with pins: no pin verification")
	}
	if err := cfg.VerifyConnection(tls.ConnectionState{}); !errors.Is(err, ErrCertificate) {
		t.Errorf("no certificate: got %v, want ErrCertificate", err)
	}
}
