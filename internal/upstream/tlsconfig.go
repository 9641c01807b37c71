package upstream

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrCertificate: the server's certificate chain holds no pinned
// certificate, or one that does not vouch for the server (see clientTLSConfig).
var ErrCertificate = errors.New("upstream: server certificate not trusted")

// clientTLSConfig returns the TLS client configuration for the server
// serverName (a host name or IP address, without port): TLS 1.2 or later,
// serverName as SNI, and nextProtos offered by ALPN.
//
// The server is authenticated by pins when there are any (the rule
// of DNS stamps: the SHA-256 of the TBS part of one certificate of the
// presented chain is a pin; see verifyPinned), without the system's
// roots, so that a pinned self-signed certificate works; otherwise by the
// system's roots and the server name, as crypto/tls does by default. now
// is the clock of certificate validity.
//
// Through a proxy (proxied) the client neither keeps session tickets nor
// resumes sessions: a resumed session would link a new connection, on a
// new Tor circuit, to the old one. Directly, sessions are resumed from a
// cache shared by the configuration's connections.
func clientTLSConfig(serverName string, pins [][32]byte, proxied bool, nextProtos []string, now func() time.Time) *tls.Config {
	cfg := &tls.Config{
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		Time:       now,
	}
	if proxied {
		cfg.SessionTicketsDisabled = true
	} else {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(0)
	}
	if len(pins) > 0 {
		cfg.InsecureSkipVerify = true // verifyPinned replaces it
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, pins, serverName, now())
		}
	}
	return cfg
}

// verifyPinned accepts the chain certs (the server's own certificate
// first, as presented) if one of its certificates is pinned: the SHA-256
// of its TBS part (x509.Certificate.RawTBSCertificate) is in pins.
//
//   - The server's own certificate pinned: accepted if valid at now,
//     whatever its name or issuer (a self-signed certificate works); the
//     TLS handshake proves that the server holds its key.
//   - Another certificate of the chain pinned (a CA): the server's
//     certificate must chain up to it through the others, for name, at
//     now. A chain that merely contains a pinned CA certificate, which
//     anyone can copy, proves nothing by itself.
func verifyPinned(certs []*x509.Certificate, pins [][32]byte, name string, now time.Time) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: no certificate", ErrCertificate)
	}
	leaf := certs[0]
	var chainErr error
	for i, c := range certs {
		if !pinned(c, pins) {
			continue
		}
		if i == 0 {
			if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return fmt.Errorf("%w: the pinned certificate is valid from %v to %v, not at %v", ErrCertificate,
					leaf.NotBefore.UTC(), leaf.NotAfter.UTC(), now.UTC())
			}
			return nil
		}
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(c)
		for _, ic := range certs[1:i] {
			inter.AddCert(ic)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: now})
		if err == nil {
			return nil
		}
		chainErr = err
	}
	if chainErr != nil {
		return fmt.Errorf("%w: the server's certificate does not chain up to the pinned one: %w", ErrCertificate, chainErr)
	}
	return fmt.Errorf("%w: no certificate of the chain (%d) matches a pin", ErrCertificate, len(certs))
}

func pinned(c *x509.Certificate, pins [][32]byte) bool {
	return slices.Contains(pins, sha256.Sum256(c.RawTBSCertificate))
}
