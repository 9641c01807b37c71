package egress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// SOCKS5 (RFC 1928) with username/password authentication (RFC 1929),
// CONNECT only. Written here rather than taken from golang.org/x/net/proxy
// for one reason: x/net waits for the CONNECT reply before it returns the
// connection, while Tor accepts "optimistic data", the first payload bytes
// written right after the CONNECT request, and then saves a whole circuit
// round trip.

// socksReplies are the RFC 1928 reply codes, and Tor's extensions
// (doc/spec socks-extensions) for onion services.
var socksReplies = map[byte]string{
	0x01: "general failure",
	0x02: "connection not allowed by ruleset",
	0x03: "network unreachable",
	0x04: "host unreachable",
	0x05: "connection refused",
	0x06: "TTL expired",
	0x07: "command not supported",
	0x08: "address type not supported",
	0xf0: "onion service descriptor can not be found",
	0xf1: "onion service descriptor is invalid",
	0xf2: "onion service introduction failed",
	0xf3: "onion service rendezvous failed",
	0xf4: "onion service missing client authorization",
	0xf5: "onion service wrong client authorization",
	0xf6: "onion service invalid address",
	0xf7: "onion service introduction timed out",
}

// socksError is a non-zero reply to CONNECT.
type socksError struct {
	code   byte
	target string
}

func (e *socksError) Error() string {
	msg, ok := socksReplies[e.code]
	if !ok {
		msg = "unknown reply"
	}
	return fmt.Sprintf("socks5: CONNECT %s refused: %s (0x%02x)", e.target, msg, e.code)
}

func (e *socksError) Unwrap() error { return ErrSOCKS }

// SOCKS5 authentication methods (RFC 1928 section 3).
const (
	methodNone     = 0x00
	methodPassword = 0x02 // RFC 1929
	methodRefused  = 0xff
)

// SOCKSConfig configures SOCKS5.
type SOCKSConfig struct {
	// Addr is the proxy: "ip:port" (an IP literal: its name would need a
	// local lookup), or the path of a Unix-domain socket ("/run/tor/socks").
	Addr string
	// OptimisticData writes the payload right after the CONNECT request,
	// before the proxy's reply, which Tor accepts on some circuits (see
	// the README: measured slower, so off by default).
	OptimisticData bool
	// Isolation: the credentials of each dial select a circuit (made up
	// per epoch or query: Tor's IsolateSOCKSAuth). A proxy that takes no
	// authentication defeats that, which is logged once.
	Isolation bool
	// Account: the credentials are an account on the proxy, sent as they
	// are (from the proxy URL). With Isolation, a warning says once that
	// circuits cannot then be isolated by credentials.
	Account bool
	// Logger receives the warnings; nil discards them.
	Logger *slog.Logger
}

// SOCKS5 returns the Dialer that opens TCP connections through a SOCKS5
// proxy (RFC 1928, CONNECT only, with username/password authentication,
// RFC 1929). The only direct connection it ever makes is to the proxy.
// It was written here rather than taken from golang.org/x/net/proxy to
// choose between the authentication methods, to write data optimistically
// and to acknowledge Tor's writes at once (see quickACK).
func SOCKS5(cfg SOCKSConfig) Dialer {
	d := &socksDialer{network: "tcp", proxyAddr: cfg.Addr, optimistic: cfg.OptimisticData,
		isolating: cfg.Isolation && !cfg.Account, log: cfg.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if IsUnixSocket(cfg.Addr) {
		d.network = "unix"
	}
	if cfg.Isolation && cfg.Account {
		d.warnNoIsolation("the proxy URL's username and password are an account on it, sent as they are")
	}
	return d
}

type socksDialer struct {
	network    string // "tcp", or "unix" for a Unix-domain socket
	proxyAddr  string // IP literal and port, or the socket's path
	optimistic bool
	isolating  bool
	log        *slog.Logger
	// warned is set by the one warning that isolation by credentials is
	// impossible (a proxy that takes no authentication, or an account).
	warned atomic.Bool
	dialer net.Dialer
}

// IsUnixSocket reports whether a SOCKS address is the path of a
// Unix-domain socket rather than "ip:port".
func IsUnixSocket(addr string) bool { return strings.HasPrefix(addr, "/") }

func (d *socksDialer) Proxied() bool  { return true }
func (d *socksDialer) String() string { return "through SOCKS5 proxy " + d.proxyAddr }

func (d *socksDialer) DialUDP(string) (*net.UDPConn, error) { return nil, ErrNoUDP }

// warnNoIsolation logs, once per dialer, that queries cannot be kept apart
// by SOCKS credentials, and why. Client keys still change as configured.
func (d *socksDialer) warnNoIsolation(why string) {
	if d.warned.CompareAndSwap(false, true) {
		d.log.Warn("SOCKS proxy " + d.proxyAddr + ": no isolation by credentials (no new Tor circuit per epoch or query): " +
			why + "; client keys still change")
	}
}

// DialTCP connects to addr ("host:port"; a host name goes to the proxy as a
// name) with cred, and writes payload: with optimistic data right after
// the CONNECT request, before its reply; otherwise after it. ctx bounds
// everything; the connection returned keeps ctx's deadline, and
// acknowledges each read at once (see ackConn).
func (d *socksDialer) DialTCP(ctx context.Context, addr string, cred Credentials, payload []byte) (net.Conn, error) {
	req, err := connectRequest(addr)
	if err != nil {
		return nil, err
	}
	c, err := d.dialer.DialContext(ctx, d.network, d.proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: proxy %s: %w", ErrSOCKS, d.proxyAddr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	err = d.handshake(c, req, addr, cred.User, cred.Pass, payload)
	if !stop() || ctx.Err() != nil || err != nil && pastDeadline(ctx) {
		c.Close()
		cause := context.Cause(ctx)
		if cause == nil { // the connection's deadline fired a moment before ctx's
			cause = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("%w: proxy %s: %w", ErrSOCKS, d.proxyAddr, cause)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return ackConn{c}, nil
}

// authenticate offers "no authentication", and username/password when
// there are credentials, and follows the server's choice. Tor picks
// username/password when both are offered (unless PreferSOCKSNoAuth), so
// isolation by credentials works; a server that picks "no authentication"
// defeats it, which is logged once.
func (d *socksDialer) authenticate(c net.Conn, user, pass string) error {
	greeting := []byte{5, 1, methodNone}
	if user != "" || pass != "" {
		greeting = []byte{5, 2, methodNone, methodPassword}
	}
	if _, err := c.Write(greeting); err != nil {
		return fmt.Errorf("%w: proxy %s: %w", ErrSOCKS, d.proxyAddr, err)
	}
	var buf [2]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return fmt.Errorf("%w: proxy %s: reading method: %w", ErrSOCKS, d.proxyAddr, err)
	}
	if buf[0] != 5 {
		return fmt.Errorf("%w: proxy %s does not speak SOCKS5 (version %d)", ErrSOCKS, d.proxyAddr, buf[0])
	}
	switch m := buf[1]; {
	case m == methodNone:
		if d.isolating {
			d.warnNoIsolation("it takes no authentication")
		}
		return nil
	case m == methodPassword && len(greeting) == 4:
	case m == methodRefused && len(greeting) == 3:
		return fmt.Errorf("%w: proxy %s requires authentication (give USER:PASS in the proxy URL)", ErrSOCKS, d.proxyAddr)
	case m == methodRefused:
		return fmt.Errorf("%w: proxy %s accepts neither no authentication nor username/password", ErrSOCKS, d.proxyAddr)
	default:
		return fmt.Errorf("%w: proxy %s chose authentication method 0x%02x, which was not offered", ErrSOCKS, d.proxyAddr, m)
	}
	auth := make([]byte, 0, 3+len(user)+len(pass))
	auth = append(auth, 1, byte(len(user)))
	auth = append(auth, user...)
	auth = append(auth, byte(len(pass)))
	auth = append(auth, pass...)
	if _, err := c.Write(auth); err != nil {
		return fmt.Errorf("%w: proxy %s: %w", ErrSOCKS, d.proxyAddr, err)
	}
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return fmt.Errorf("%w: proxy %s: reading authentication status: %w", ErrSOCKS, d.proxyAddr, err)
	}
	if buf[1] != 0 {
		if d.isolating {
			return fmt.Errorf("%w: proxy %s rejected the credentials made up for isolation: it wants an account (give USER:PASS in the proxy URL)",
				ErrSOCKS, d.proxyAddr)
		}
		return fmt.Errorf("%w: proxy %s rejected the credentials", ErrSOCKS, d.proxyAddr)
	}
	return nil
}

func (d *socksDialer) handshake(c net.Conn, req []byte, target, user, pass string, payload []byte) error {
	if err := d.authenticate(c, user, pass); err != nil {
		return err
	}
	if d.optimistic {
		req = append(req, payload...)
	}
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("%w: proxy %s: %w", ErrSOCKS, d.proxyAddr, err)
	}
	// Reply: VER REP RSV ATYP BND.ADDR BND.PORT.
	var head [5]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return fmt.Errorf("%w: proxy %s: reading CONNECT reply for %s: %w", ErrSOCKS, d.proxyAddr, target, err)
	}
	if head[0] != 5 {
		return fmt.Errorf("%w: proxy %s: bad reply version %d", ErrSOCKS, d.proxyAddr, head[0])
	}
	if head[1] != 0 {
		return &socksError{code: head[1], target: target}
	}
	var rest int // bytes left after the first byte of BND.ADDR
	switch head[3] {
	case 1:
		rest = 4 - 1 + 2
	case 4:
		rest = 16 - 1 + 2
	case 3:
		rest = int(head[4]) + 2
	default:
		return fmt.Errorf("%w: proxy %s: bad address type %d in reply", ErrSOCKS, d.proxyAddr, head[3])
	}
	if _, err := io.ReadFull(c, make([]byte, rest)); err != nil {
		return fmt.Errorf("%w: proxy %s: reading CONNECT reply: %w", ErrSOCKS, d.proxyAddr, err)
	}
	if d.optimistic {
		// Nothing to send that would carry the ACK of the reply: without
		// one, Tor (Nagle on, no TCP_NODELAY) holds the answer until the
		// delayed ACK, 40 ms later.
		quickACK(c)
	} else {
		if _, err := c.Write(payload); err != nil {
			return fmt.Errorf("%w: writing to %s: %w", ErrSOCKS, target, err)
		}
	}
	return nil
}

// connectRequest encodes CONNECT target: an IP literal as an address, any
// other host as a domain name for the proxy to resolve.
func connectRequest(target string) ([]byte, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", ErrSOCKS, target, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: bad port", ErrSOCKS, target)
	}
	req := []byte{5, 1, 0}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			req = append(req, 1)
		} else {
			req = append(req, 4)
		}
		req = append(req, ip.AsSlice()...)
	} else {
		if len(host) == 0 || len(host) > 255 {
			return nil, fmt.Errorf("%w: target host %q: bad length", ErrSOCKS, host)
		}
		req = append(req, 3, byte(len(host)))
		req = append(req, host...)
	}
	return append(req, byte(port>>8), byte(port)), nil
}

// pastDeadline reports whether ctx's deadline, if any, has passed, even if
// ctx does not say so yet.
func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// ackConn acknowledges at once (quickACK) every read that returns data.
// Tor sets no TCP_NODELAY: Nagle holds a small segment it writes until the
// previous one is acknowledged, and Linux delays the ACK of data it
// received on an interactive connection by 40 ms unless told otherwise.
// Tor writes an answer that spans cells in several writes, so the read of
// its first part must be acknowledged at once for the rest to follow.
type ackConn struct{ net.Conn }

func (c ackConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		quickACK(c.Conn)
	}
	return n, err
}
