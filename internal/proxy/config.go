package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/names"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// LevelNotice sits between Info and Warn, for the 1.x NOTICE lines
// ("Starting", "Proxying from ... to ...").
const LevelNotice = slog.Level(2)

// Defaults of the zero Config values.
const (
	DefaultMaxActiveRequests = 250
	DefaultTimeout           = 10 * time.Second // 1.x: 10 s per request
	DefaultTorTimeout        = 20 * time.Second // a new Tor circuit may take seconds
	DefaultIsolationEpoch    = 10 * time.Minute
	DefaultCertRefresh       = time.Hour
)

// Isolation says how queries through a SOCKS proxy are separated from each
// other. Tor's IsolateSOCKSAuth gives each distinct SOCKS username/password
// its own circuit.
type Isolation int

const (
	// IsolationNone: one SOCKS identity and one client key pair for the
	// whole run (unless EphemeralKeys).
	IsolationNone Isolation = iota
	// IsolationEpoch: SOCKS credentials and the client key pair change
	// together every Epoch, so each epoch rides its own circuit with its
	// own key and the resolver cannot tie epochs together.
	IsolationEpoch
	// IsolationQuery: fresh credentials (so a fresh circuit) and a fresh
	// key pair for every query.
	IsolationQuery
)

func (i Isolation) String() string {
	switch i {
	case IsolationNone:
		return "none"
	case IsolationEpoch:
		return "epoch"
	case IsolationQuery:
		return "query"
	}
	return "isolation(" + strconv.Itoa(int(i)) + ")"
}

// ParseIsolation parses "none", "epoch" or "query".
func ParseIsolation(s string) (Isolation, error) {
	for _, i := range []Isolation{IsolationNone, IsolationEpoch, IsolationQuery} {
		if s == i.String() {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown isolation %q (want none, epoch or query)", s)
}

// SOCKS configures the SOCKS5 proxy all upstream traffic goes through.
type SOCKS struct {
	// Addr is the proxy's "host:port", e.g. "127.0.0.1:9050", or the
	// absolute path of a Unix-domain socket (Tor's "SocksPort unix:PATH").
	// The host must be an IP literal: a name would need a local lookup,
	// which Tor mode never does, so New refuses one.
	Addr string
	// User and Password are an account on the proxy (RFC 1929), sent as
	// they are on every connection. Without them, Isolation other than
	// IsolationNone makes up credentials per epoch or query, which Tor's
	// IsolateSOCKSAuth turns into separate circuits; with them, circuits
	// are not isolated (a warning says so once) and only client keys
	// change. Both "no authentication" and username/password are offered
	// whenever there are credentials: a proxy that picks the former cannot
	// isolate either (warned once too).
	User, Password string
	// Isolation and Epoch: see [Isolation]. Epoch zero means
	// DefaultIsolationEpoch.
	Isolation Isolation
	Epoch     time.Duration
	// OptimisticData sends the encrypted query right after the CONNECT
	// request, before the proxy's reply ("optimistic data"), to save a
	// circuit round trip. Off by default: Tor 0.4.8+ attaches exit streams
	// to conflux circuits, on which it holds early data until CONNECTED
	// (no gain), and where it does forward it, the exit and middle relays
	// hold the answer behind the unacknowledged CONNECTED cell (Nagle and
	// a 40 ms delayed ACK on quiet OR connections): measured through the
	// private Tor network (tests/bench/torlatency), never faster. Generic
	// SOCKS servers may also drop early data.
	OptimisticData bool
}

// maxResolvers bounds Config.Resolvers.
const maxResolvers = 64

// Selection is how a query's first resolver is chosen among several.
type Selection int

const (
	SelectAuto    Selection = iota // Rotate through SOCKS, Fastest directly
	SelectRotate                   // a resolver per isolation epoch (or query)
	SelectFastest                  // the fastest healthy ones, with exploration
)

func (s Selection) String() string {
	switch s {
	case SelectRotate:
		return "rotate"
	case SelectFastest:
		return "fastest"
	}
	return "auto"
}

// ParseSelection parses "rotate" or "fastest".
func ParseSelection(s string) (Selection, error) {
	for _, x := range []Selection{SelectRotate, SelectFastest} {
		if s == x.String() {
			return x, nil
		}
	}
	return 0, fmt.Errorf("unknown selection %q (want rotate or fastest)", s)
}

// Toggle is a setting whose default depends on the mode.
type Toggle int8

const (
	Auto Toggle = iota // the mode's default
	On
	Off
)

// on reports whether t is on, given the default.
func (t Toggle) on(def bool) bool {
	switch t {
	case On:
		return true
	case Off:
		return false
	}
	return def
}

// Config is the proxy's configuration. The zero value of each field is a
// sensible default; New validates it and does no I/O.
type Config struct {
	// Resolvers are the resolvers queries go to, each of any kind (see
	// upstream.Spec). Through SOCKS an address may name its host: the name
	// then goes to the proxy, never resolved here. With several, queries
	// are spread, fail over and are hedged (see package resolverset); with
	// one, it gets every query, as in dnscrypt-proxy 1.x.
	Resolvers []upstream.Spec
	// Operators, parallel to Resolvers, say who runs each (rotation
	// prefers another operator than the last epoch's); missing or empty
	// ones are derived from the resolver (see resolverset.Operator).
	Operators []string
	// Selection picks each query's first resolver among several: Rotate
	// (per isolation epoch) through SOCKS, Fastest directly by default.
	Selection Selection
	// Hedge sends a late query once more: Auto, the zero value, hedges
	// with several resolvers only. HedgeOther hedges to another resolver
	// rather than to the same one over another circuit: Auto means
	// directly only (through Tor, a second resolver would see the query).
	Hedge, HedgeOther Toggle

	// ClientKey is the client key pair; nil makes a random one at start
	// (1.x "Generating a new session key pair"). A configured key is used
	// for every query even with SOCKS isolation, which then changes only
	// the circuit: the resolver can link epochs by this key.
	ClientKey *dnscrypt.KeyPair
	// EphemeralKeys uses a new key pair for every query (1.x -E).
	EphemeralKeys bool

	// EDNSPayloadSize is written into the OPT of outgoing queries; zero
	// means edns.DefaultPayloadSize (1252); <= 512 disables the rewrite
	// unless the client sent an OPT itself.
	EDNSPayloadSize int
	// TCPOnly answers every UDP query at once with TC=1 and sends
	// everything upstream over TCP, certificates included (1.x -T).
	TCPOnly bool
	// MaxActiveRequests caps requests in flight (UDP and TCP together);
	// when full the oldest is dropped. Zero means 250.
	MaxActiveRequests int
	// IgnoreTimestamps accepts certificates that are not valid yet (1.x -I;
	// expired ones are still refused).
	IgnoreTimestamps bool
	// Timeout bounds each request, upstream retries included. Zero means
	// DefaultTimeout, or DefaultTorTimeout with SOCKS.
	Timeout time.Duration

	// SOCKS, when set, carries ALL upstream traffic over TCP through a
	// SOCKS5 proxy: no UDP upstream, no direct connection, no local lookup.
	SOCKS *SOCKS

	// Special-use names (.onion, .local, localhost, private reverse
	// zones, ...) are always answered locally and never sent upstream (see
	// package names). PrivateDomains lists suffixes sent upstream anyway
	// (a lab zone, a company's internal domain, a private reverse zone),
	// whose answers may also hold internal addresses, like unbound's
	// private-domain.
	PrivateDomains []string
	// FilterInternal removes internal addresses (private, loopback,
	// link-local, ...) from answers to names that are not private domains:
	// DNS rebinding protection, as Tor's ClientDNSRejectInternalAddresses.
	// Auto, the zero value, filters through SOCKS only.
	FilterInternal Toggle

	// CertRefresh is the interval between certificate checks; zero means
	// one hour (with jitter).
	CertRefresh time.Duration

	// Logger receives the log; nil discards it. Query names only at Debug.
	Logger *slog.Logger
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
	// OnReady, if set, is called once (for --daemonize and sd_notify):
	// when the upstream is ready (a DNSCrypt resolver's first
	// certificate; a set's first ready member), or 3 seconds after the
	// listeners started answering without it (SERVFAIL until then): see
	// Serve.
	OnReady func()
}

// Validate reports every bad value in cfg, as New does, but without New's
// work (New also generates a client key pair). The error is nil when New
// would accept cfg.
func (cfg Config) Validate() error {
	if _, err := cfg.withDefaults(); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}

// withDefaults returns cfg with zero fields filled in, or an error for a
// bad value.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	switch n := len(cfg.Resolvers); {
	case n == 0:
		errs = append(errs, errors.New("no resolver"))
	case n > maxResolvers:
		errs = append(errs, fmt.Errorf("%d resolvers, at most %d", n, maxResolvers))
	}
	if len(cfg.Operators) > len(cfg.Resolvers) {
		errs = append(errs, fmt.Errorf("%d operators for %d resolvers", len(cfg.Operators), len(cfg.Resolvers)))
	}
	for i := range cfg.Resolvers {
		if err := cfg.Resolvers[i].Check(cfg.SOCKS != nil); err != nil {
			errs = append(errs, fmt.Errorf("resolver %s: %w", cfg.Resolvers[i].String(), err))
		}
	}
	if cfg.ClientKey != nil && cfg.EphemeralKeys {
		errs = append(errs, errors.New("a client key and ephemeral keys exclude each other"))
	}
	switch {
	case cfg.EDNSPayloadSize == 0:
		cfg.EDNSPayloadSize = edns.DefaultPayloadSize
	case cfg.EDNSPayloadSize < 0 || cfg.EDNSPayloadSize > 65535:
		errs = append(errs, fmt.Errorf("EDNS payload size %d out of range", cfg.EDNSPayloadSize))
	}
	switch {
	case cfg.MaxActiveRequests == 0:
		cfg.MaxActiveRequests = DefaultMaxActiveRequests
	case cfg.MaxActiveRequests < 0:
		errs = append(errs, fmt.Errorf("max active requests %d must be positive", cfg.MaxActiveRequests))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v must be positive", cfg.Timeout))
	} else if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
		if cfg.SOCKS != nil {
			cfg.Timeout = DefaultTorTimeout
		}
	}
	if s := cfg.SOCKS; s != nil {
		sc := *s
		if egress.IsUnixSocket(sc.Addr) {
			if len(sc.Addr) > maxUnixPath {
				errs = append(errs, fmt.Errorf("SOCKS proxy socket path %q is longer than %d bytes", sc.Addr, maxUnixPath))
			}
		} else if _, err := netip.ParseAddrPort(sc.Addr); err != nil {
			errs = append(errs, fmt.Errorf("SOCKS proxy address %q must be an IP address and port, or a socket path", sc.Addr))
		}
		if len(sc.User) > 255 || len(sc.Password) > 255 {
			errs = append(errs, errors.New("SOCKS user and password are limited to 255 bytes"))
		}
		if sc.Epoch < 0 {
			errs = append(errs, errors.New("isolation epoch must be positive"))
		} else if sc.Epoch == 0 {
			sc.Epoch = DefaultIsolationEpoch
		}
		cfg.SOCKS = &sc
	}
	if _, err := cfg.namesPolicy(); err != nil {
		errs = append(errs, err)
	}
	if cfg.FilterInternal < Auto || cfg.FilterInternal > Off {
		errs = append(errs, fmt.Errorf("FilterInternal %d out of range", cfg.FilterInternal))
	}
	if cfg.CertRefresh <= 0 {
		cfg.CertRefresh = DefaultCertRefresh
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, errors.Join(errs...)
}

// maxUnixPath is the longest Unix-domain socket path (Linux's sun_path,
// less its terminating NUL).
const maxUnixPath = 107

// namesPolicy is the policy of locally answered names and filtered
// answers.
func (cfg *Config) namesPolicy() (*names.Policy, error) {
	return names.New(names.Config{
		Forward:        cfg.PrivateDomains,
		FilterInternal: cfg.FilterInternal.on(cfg.SOCKS != nil),
	})
}
