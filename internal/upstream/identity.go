package upstream

import (
	"crypto/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// Identity is what ties queries together upstream: the SOCKS credentials
// that pick a Tor circuit (and so, for the upstreams that keep a
// connection open, the connection), and the DNSCrypt client key pair. The
// frontend changes them together (isolation epochs), so that a new circuit
// never carries an old key. An Identity is safe for concurrent use.
type Identity struct {
	egress.Credentials
	// Born is when the identity was made (the start of its epoch).
	Born time.Time

	kp     *dnscrypt.KeyPair // fixed, or made on first use
	kpOnce sync.Once
	kpErr  error
	bound  atomic.Pointer[[]boundKey] // shared keys with recent certificates
}

type boundKey struct {
	cert *certs.Cert
	key  *dnscrypt.SharedKey
}

// maxBound is how many certificates' shared keys an identity keeps (one
// per DNSCrypt resolver it is used with, and the certificate each one
// rotates to).
const maxBound = 4

// NewIdentity returns an identity with the credentials cred, born now. kp
// is its client key pair; nil makes a random one when first needed (an
// identity used only with upstreams other than DNSCrypt never makes one).
func NewIdentity(cred egress.Credentials, kp *dnscrypt.KeyPair, now time.Time) *Identity {
	return &Identity{Credentials: cred, Born: now, kp: kp}
}

// KeyPair returns the identity's client key pair.
func (id *Identity) KeyPair() (*dnscrypt.KeyPair, error) {
	id.kpOnce.Do(func() {
		if id.kp == nil {
			id.kp, id.kpErr = dnscrypt.GenerateKeyPair(rand.Reader)
		}
	})
	return id.kp, id.kpErr
}

// SharedKey returns the identity's key with cert, computing it once per
// certificate (an X25519 operation); later calls are a few pointer
// compares.
func (id *Identity) SharedKey(cert *certs.Cert) (*dnscrypt.SharedKey, error) {
	old := id.bound.Load()
	if old != nil {
		for _, b := range *old {
			if b.cert == cert {
				return b.key, nil
			}
		}
	}
	kp, err := id.KeyPair()
	if err != nil {
		return nil, err
	}
	k, err := dnscrypt.NewSharedKey(cert.Construction, kp, &cert.ResolverPK, cert.ClientMagic)
	if err != nil {
		return nil, err
	}
	next := []boundKey{{cert, k}}
	if old != nil {
		next = append(next, (*old)[:min(len(*old), maxBound-1)]...)
	}
	id.bound.CompareAndSwap(old, &next) // lost to another: that one's cache is as good
	return k, nil
}
