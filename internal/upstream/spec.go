package upstream

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// Kind is how an upstream carries queries.
type Kind uint8

const (
	// KindDNSCrypt is DNSCrypt v2 over UDP and TCP (one query per TCP
	// connection).
	KindDNSCrypt Kind = iota + 1
	// KindTCP is DNS over TCP (RFC 7766): one persistent connection,
	// pipelined queries; in the clear (ttdnsd's job through Tor).
	KindTCP
	// KindTLS is DNS over TLS (RFC 7858): a KindTCP connection inside TLS.
	KindTLS
	// KindHTTPS is DNS over HTTPS (RFC 8484): POST over HTTP/2.
	KindHTTPS
)

func (k Kind) String() string {
	switch k {
	case KindDNSCrypt:
		return "dnscrypt"
	case KindTCP:
		return "tcp"
	case KindTLS:
		return "tls"
	case KindHTTPS:
		return "https"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Spec says how to reach one resolver.
type Spec struct {
	Kind Kind
	// Name names the resolver in logs ("scaleway-fr"); empty: the address.
	Name string
	// Addr is where to connect: "ip:port", or, through a SOCKS proxy only,
	// "host:port" (the name goes to the proxy, never resolved here).
	Addr string

	// DNSCrypt: the provider name ("2.dnscrypt-cert.example.com") and the
	// provider's Ed25519 public key.
	ProviderName string
	ProviderKey  ed25519.PublicKey

	// TLS and HTTPS: the server name (SNI, and the certificate's name when
	// there are no pins), and pins: SHA-256 digests of the TBS part of
	// certificates, one of which must be in the server's chain (as DNS
	// stamps carry them). With pins the chain is not checked against the
	// system's roots: a self-signed certificate may be pinned.
	ServerName string
	Pins       [][32]byte
	// HTTPS: the path of the URL, "/dns-query".
	Path string
}

// String is the resolver as logs name it.
func (s *Spec) String() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Addr
}

// Options are what every upstream shares, from the proxy's configuration.
type Options struct {
	// Dialer carries every byte the upstream sends. Required.
	Dialer egress.Dialer
	// Timeout is the deadline of a query (for how long a UDP attempt may
	// wait before the TCP retry). Zero means 10 s.
	Timeout time.Duration
	// MaxConns bounds the TCP connections open at once (DNSCrypt: one per
	// query in flight over TCP). Zero means 64.
	MaxConns int
	// EDNSPayloadSize is the configured payload size (DNSCrypt UDP
	// padding); zero means 1252.
	EDNSPayloadSize int
	// TCPOnly: DNSCrypt sends nothing over UDP, certificates included.
	TCPOnly bool
	// DNSCrypt certificates: the interval between checks (zero: one
	// hour), whether not-yet-valid ones are taken (1.x -I), and the SOCKS
	// credentials of each certificate fetch (nil: none).
	CertRefresh      time.Duration
	IgnoreTimestamps bool
	CertCredentials  func() egress.Credentials
	// Now is the clock of certificate validity; nil means time.Now.
	Now func() time.Time
	// Logger receives the upstream's own log lines; nil discards them.
	Logger *slog.Logger
}

func (o *Options) withDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 64
	}
	if o.EDNSPayloadSize == 0 {
		o.EDNSPayloadSize = 1252
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CertCredentials == nil {
		o.CertCredentials = func() egress.Credentials { return egress.Credentials{} }
	}
}

// ErrSpec wraps the errors of New about the Spec.
var ErrSpec = errors.New("upstream: invalid resolver")

// New returns the upstream that spec describes, reached with opts. It does
// no I/O. Through a proxy (opts.Dialer.Proxied) the address may name its
// host; directly it must be an IP address.
func New(spec Spec, opts Options) (Upstream, error) {
	if opts.Dialer == nil {
		return nil, errors.New("upstream: no Dialer")
	}
	opts.withDefaults()
	if err := spec.Check(opts.Dialer.Proxied()); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrSpec, spec.String(), err)
	}
	switch spec.Kind {
	case KindDNSCrypt:
		return NewDNSCrypt(spec, opts)
	case KindTCP, KindTLS:
		return NewStream(spec, opts)
	case KindHTTPS:
		u, err := NewHTTPS(spec, opts)
		if err != nil {
			return nil, err // not a nil *HTTPS in a non-nil Upstream
		}
		return u, nil
	}
	return nil, fmt.Errorf("%w %s: %v upstreams are not supported", ErrSpec, spec.String(), spec.Kind)
}

// Check validates the address, and the fields of the spec's kind, for a
// Dialer that is proxied or not.
func (s *Spec) Check(proxied bool) error {
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", s.Addr, err)
	}
	if _, err := netip.ParseAddr(host); err != nil && !proxied {
		return fmt.Errorf("address %q: %w", s.Addr, ErrHostName)
	}
	switch s.Kind {
	case KindDNSCrypt:
		if err := dnscrypt.CheckProviderName(s.ProviderName); err != nil {
			return err
		}
		if len(s.ProviderKey) != ed25519.PublicKeySize {
			return fmt.Errorf("provider key must be %d bytes, got %d", ed25519.PublicKeySize, len(s.ProviderKey))
		}
	case KindTLS, KindHTTPS:
		if s.ServerName == "" {
			return errors.New("no server name")
		}
	}
	return nil
}
