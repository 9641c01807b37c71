// Package egress is how bytes leave the machine. Every connection the
// proxy opens to a resolver (certificate fetches, queries, TLS and HTTP/2
// handshakes) goes through one [Dialer]: [Direct], or [SOCKS5] through a
// proxy such as Tor. The SOCKS5 dialer never opens a UDP socket and never
// resolves a name (names go to the proxy), and the direct one never
// resolves a name either: "nothing leaves except through the proxy" holds
// by construction, whatever kind of upstream asks.
//
//	d := egress.SOCKS5(egress.SOCKSConfig{Addr: "127.0.0.1:9050", Isolation: true})
//	c, err := d.DialTCP(ctx, "resolver.example:853", egress.Credentials{User: "epoch-42", Pass: "x"}, nil)
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Errors of this package; every error of a SOCKS exchange wraps ErrSOCKS.
var (
	// ErrNoUDP: UDP never goes through a SOCKS proxy (Tor carries none).
	ErrNoUDP = errors.New("egress: no UDP through a SOCKS proxy")
	// ErrHostName: directly, a host name would need a local lookup, which
	// this package never makes; give an IP address, or a proxy.
	ErrHostName = errors.New("egress: a host name needs a proxy (no local lookup)")
	// ErrSOCKS wraps every failure of the SOCKS5 exchange.
	ErrSOCKS = errors.New("socks5")
)

// Credentials are the SOCKS5 username and password of a connection (RFC
// 1929). Tor gives each distinct pair its own circuit (IsolateSOCKSAuth).
// The zero value means none.
type Credentials struct{ User, Pass string }

// Dialer opens the connections that leave the proxy. Its methods are safe
// for concurrent use.
type Dialer interface {
	// DialTCP connects to addr, "host:port", with the credentials cred
	// (used by SOCKS5 only), and writes payload (none if empty). Directly,
	// host must be an IP literal; through SOCKS a name goes to the proxy as
	// a name. ctx bounds the whole exchange, and its deadline, if any,
	// stays set on the connection returned.
	DialTCP(ctx context.Context, addr string, cred Credentials, payload []byte) (net.Conn, error)
	// DialUDP returns a UDP socket connected to addr, an IP literal and a
	// port; through a proxy it fails with ErrNoUDP.
	DialUDP(addr string) (*net.UDPConn, error)
	// Proxied reports whether connections go through a proxy.
	Proxied() bool
	// String describes the route for logs: "directly", "through SOCKS5
	// proxy 127.0.0.1:9050".
	String() string
}

// Direct returns the Dialer that connects from this machine to IP
// addresses, never looking up a name.
func Direct() Dialer { return direct{} }

type direct struct{}

func (direct) Proxied() bool  { return false }
func (direct) String() string { return "directly" }

func (direct) DialTCP(ctx context.Context, addr string, _ Credentials, payload []byte) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrHostName, addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if len(payload) > 0 {
		if _, err := c.Write(payload); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (direct) DialUDP(addr string) (*net.UDPConn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrHostName, addr)
	}
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
}
