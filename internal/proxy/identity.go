package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// identities hands out the identity of each query (see upstream.Identity)
// according to the configuration: the SOCKS credentials that pick a Tor
// circuit and the DNSCrypt client key pair change together, per epoch or
// per query.
type identities struct {
	ephemeral bool              // a new key pair per query
	fixed     *dnscrypt.KeyPair // a configured client key: every identity uses it
	isolation Isolation         // with SOCKS only; IsolationNone without
	epoch     time.Duration
	account   egress.Credentials // configured credentials, always sent as they are
	now       func() time.Time

	static  *upstream.Identity // IsolationNone
	mu      sync.Mutex
	current atomic.Pointer[upstream.Identity] // IsolationEpoch
}

func newIdentities(cfg *Config) *identities {
	ids := &identities{ephemeral: cfg.EphemeralKeys, fixed: cfg.ClientKey, now: cfg.Now}
	if s := cfg.SOCKS; s != nil {
		ids.isolation, ids.epoch = s.Isolation, s.Epoch
		ids.account = egress.Credentials{User: s.User, Pass: s.Password}
	}
	ids.static = upstream.NewIdentity(ids.account, cfg.ClientKey, ids.now())
	return ids
}

// get returns the identity for a new query. A key pair is made only when a
// DNSCrypt upstream first needs it.
func (ids *identities) get() (*upstream.Identity, error) {
	var id *upstream.Identity
	switch ids.isolation {
	case IsolationQuery:
		return ids.fresh(), nil // already has its own key pair
	case IsolationEpoch:
		id = ids.epochIdentity()
	default:
		id = ids.static
	}
	if !ids.ephemeral {
		return id, nil
	}
	return upstream.NewIdentity(id.Credentials, nil, id.Born), nil
}

// epochIdentity returns the identity of the current epoch, starting a new
// one when the current one is Epoch old.
func (ids *identities) epochIdentity() *upstream.Identity {
	now := ids.now()
	if id := ids.current.Load(); id != nil && now.Sub(id.Born) < ids.epoch {
		return id
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if id := ids.current.Load(); id != nil && now.Sub(id.Born) < ids.epoch {
		return id
	}
	id := ids.fresh()
	ids.current.Store(id)
	return id
}

// fresh makes a new identity: random SOCKS credentials that Tor has never
// seen, so they get a circuit of their own (configured credentials are
// kept as they are), and a new key pair. A configured client key is kept:
// the user asked for it (a resolver may only accept known keys), and
// isolation then changes only the circuit.
func (ids *identities) fresh() *upstream.Identity {
	cred := ids.account
	if !ids.fixedCredentials() {
		cred = randomCredentials("")
	}
	return upstream.NewIdentity(cred, ids.fixed, ids.now())
}

// fixedCredentials reports whether the SOCKS credentials never change:
// without isolation, or when configured (an account on the proxy, which
// would refuse altered ones).
func (ids *identities) fixedCredentials() bool {
	return ids.isolation == IsolationNone || ids.account != egress.Credentials{}
}

// certCredentials returns credentials for a certificate fetch: through SOCKS
// on a circuit of its own, unrelated to any query's, unless they are fixed.
func (ids *identities) certCredentials() egress.Credentials {
	if ids.fixedCredentials() {
		return ids.account
	}
	return randomCredentials("cert-")
}

// randomCredentials returns credentials Tor has never seen (64 random bits
// each, the user's after prefix), so they get a circuit of their own.
func randomCredentials(prefix string) egress.Credentials {
	var r [16]byte
	rand.Read(r[:])
	tag := hex.EncodeToString(r[:])
	return egress.Credentials{User: prefix + tag[:16], Pass: tag[16:]}
}
