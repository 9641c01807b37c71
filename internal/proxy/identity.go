package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// identity is what ties queries together upstream: the client key pair the
// resolver sees, and the SOCKS credentials that pick a Tor circuit. They
// always change together, so that a new circuit never carries an old key.
type identity struct {
	kp         *dnscrypt.KeyPair
	user, pass string
	born       time.Time

	// bound caches the shared key of kp with the current certificate.
	bound atomic.Pointer[boundKey]
}

type boundKey struct {
	cert *certs.Cert
	key  *dnscrypt.SharedKey
}

// sharedKey returns the key of id for cert, computing it once per
// certificate (an X25519 operation); later calls are a pointer compare.
func (id *identity) sharedKey(cert *certs.Cert) (*dnscrypt.SharedKey, error) {
	if b := id.bound.Load(); b != nil && b.cert == cert {
		return b.key, nil
	}
	k, err := dnscrypt.NewSharedKey(cert.Construction, id.kp, &cert.ResolverPK, cert.ClientMagic)
	if err != nil {
		return nil, err
	}
	id.bound.Store(&boundKey{cert: cert, key: k})
	return k, nil
}

// identities hands out the identity of each query according to the
// configuration.
type identities struct {
	ephemeral bool              // a new key pair per query
	fixed     *dnscrypt.KeyPair // a configured client key: every identity uses it
	isolation Isolation         // with SOCKS only; IsolationNone without
	epoch     time.Duration
	user      string // configured credentials, always sent as they are
	pass      string
	now       func() time.Time

	static  *identity // IsolationNone
	mu      sync.Mutex
	current atomic.Pointer[identity] // IsolationEpoch
}

func newIdentities(cfg *Config, kp *dnscrypt.KeyPair) *identities {
	ids := &identities{ephemeral: cfg.EphemeralKeys, fixed: cfg.ClientKey, now: cfg.Now}
	if s := cfg.SOCKS; s != nil {
		ids.isolation, ids.epoch, ids.user, ids.pass = s.Isolation, s.Epoch, s.User, s.Password
	}
	ids.static = &identity{kp: kp, user: ids.user, pass: ids.pass, born: ids.now()}
	return ids
}

// get returns the identity for a new query.
func (ids *identities) get() (*identity, error) {
	var id *identity
	switch ids.isolation {
	case IsolationQuery:
		return ids.fresh() // already has its own key pair
	case IsolationEpoch:
		var err error
		if id, err = ids.epochIdentity(); err != nil {
			return nil, err
		}
	default:
		id = ids.static
	}
	if !ids.ephemeral {
		return id, nil
	}
	kp, err := dnscrypt.GenerateKeyPair(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &identity{kp: kp, user: id.user, pass: id.pass, born: id.born}, nil
}

// epochIdentity returns the identity of the current epoch, starting a new
// one when the current one is Epoch old.
func (ids *identities) epochIdentity() (*identity, error) {
	now := ids.now()
	if id := ids.current.Load(); id != nil && now.Sub(id.born) < ids.epoch {
		return id, nil
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if id := ids.current.Load(); id != nil && now.Sub(id.born) < ids.epoch {
		return id, nil
	}
	id, err := ids.fresh()
	if err != nil {
		return nil, err
	}
	ids.current.Store(id)
	return id, nil
}

// fresh makes a new identity: a key pair and random SOCKS credentials that
// Tor has never seen, so they get a circuit of their own (configured
// credentials are kept as they are). A configured
// client key is kept: the user asked for it (a resolver may only accept
// known keys), and isolation then changes only the circuit.
func (ids *identities) fresh() (*identity, error) {
	kp := ids.fixed
	if kp == nil {
		var err error
		if kp, err = dnscrypt.GenerateKeyPair(rand.Reader); err != nil {
			return nil, err
		}
	}
	user, pass := ids.user, ids.pass
	if !ids.fixedCredentials() {
		user, pass = randomCredentials("", "")
	}
	return &identity{kp: kp, user: user, pass: pass, born: ids.now()}, nil
}

// fixedCredentials reports whether the SOCKS credentials never change:
// without isolation, or when configured (an account on the proxy, which
// would refuse altered ones).
func (ids *identities) fixedCredentials() bool {
	return ids.isolation == IsolationNone || ids.user != "" || ids.pass != ""
}

// certCredentials returns credentials for a certificate fetch: through SOCKS
// on a circuit of its own, unrelated to any query's, unless they are fixed.
func (ids *identities) certCredentials() (user, pass string) {
	if ids.fixedCredentials() {
		return ids.user, ids.pass
	}
	return randomCredentials("cert-", "")
}

// randomCredentials appends 64 random bits to each of user and pass:
// credentials Tor has never seen, so they get a circuit of their own.
func randomCredentials(user, pass string) (string, string) {
	var r [16]byte
	rand.Read(r[:])
	tag := hex.EncodeToString(r[:])
	return user + tag[:16], pass + tag[16:]
}
