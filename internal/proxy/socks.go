package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
)

// SOCKS5 (RFC 1928) with username/password authentication (RFC 1929),
// CONNECT only. Written here rather than taken from golang.org/x/net/proxy
// for one reason: x/net waits for the CONNECT reply before it returns the
// connection, while Tor accepts "optimistic data", the first payload bytes
// written right after the CONNECT request, and then saves a whole circuit
// round trip.

// errSOCKS wraps every failure of the SOCKS exchange.
var errSOCKS = errors.New("socks5")

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

func (e *socksError) Unwrap() error { return errSOCKS }

// maxUnixPath is the longest Unix-domain socket path (Linux's sun_path,
// less its terminating NUL).
const maxUnixPath = 107

// SOCKS5 authentication methods (RFC 1928 section 3).
const (
	methodNone     = 0x00
	methodPassword = 0x02 // RFC 1929
	methodRefused  = 0xff
)

// socksDialer opens TCP connections through a SOCKS5 proxy. The only direct
// connection it ever makes is to the proxy itself.
type socksDialer struct {
	network    string // "tcp", or "unix" for a Unix-domain socket
	proxyAddr  string // IP literal and port, or the socket's path
	optimistic bool
	// isolating: the credentials of each dial are made up to pick a Tor
	// circuit (IsolateSOCKSAuth), not an account on the proxy.
	isolating bool
	log       *slog.Logger
	// warned is set by the one warning that isolation by credentials is
	// impossible (a proxy that takes no authentication, or fixed ones).
	warned atomic.Bool
	dialer net.Dialer
}

func newSOCKSDialer(s *SOCKS, log *slog.Logger) *socksDialer {
	d := &socksDialer{network: "tcp", proxyAddr: s.Addr, optimistic: s.OptimisticData, log: log,
		isolating: s.Isolation != IsolationNone && s.User == "" && s.Password == ""}
	if isUnixSocket(s.Addr) {
		d.network = "unix"
	}
	if s.Isolation != IsolationNone && !d.isolating {
		d.warnNoIsolation("the proxy URL's username and password are an account on it, sent as they are")
	}
	return d
}

// isUnixSocket reports whether a SOCKS address is the path of a
// Unix-domain socket rather than "ip:port".
func isUnixSocket(addr string) bool { return strings.HasPrefix(addr, "/") }

// warnNoIsolation logs, once per dialer, that queries cannot be kept apart
// by SOCKS credentials, and why. Client keys still change as configured.
func (d *socksDialer) warnNoIsolation(why string) {
	if d.warned.CompareAndSwap(false, true) {
		d.log.Warn("SOCKS proxy " + d.proxyAddr + ": no isolation by credentials (no new Tor circuit per epoch or query): " +
			why + "; client keys still change")
	}
}

// dial connects to target ("host:port"; a host name goes to the proxy as a
// name) with the credentials user/pass (none if both empty), and writes
// payload. With optimistic data the payload follows the CONNECT request
// before its reply; otherwise after it. ctx bounds everything; the returned
// connection carries ctx's deadline.
func (d *socksDialer) dial(ctx context.Context, target, user, pass string, payload []byte) (net.Conn, error) {
	req, err := connectRequest(target)
	if err != nil {
		return nil, err
	}
	c, err := d.dialer.DialContext(ctx, d.network, d.proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: proxy %s: %w", errSOCKS, d.proxyAddr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	err = d.handshake(c, req, target, user, pass, payload)
	if !stop() || ctx.Err() != nil {
		c.Close()
		if err == nil || ctx.Err() != nil {
			err = fmt.Errorf("%w: proxy %s: %w", errSOCKS, d.proxyAddr, context.Cause(ctx))
		}
		return nil, err
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
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
		return fmt.Errorf("%w: proxy %s: %w", errSOCKS, d.proxyAddr, err)
	}
	var buf [2]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return fmt.Errorf("%w: proxy %s: reading method: %w", errSOCKS, d.proxyAddr, err)
	}
	if buf[0] != 5 {
		return fmt.Errorf("%w: proxy %s does not speak SOCKS5 (version %d)", errSOCKS, d.proxyAddr, buf[0])
	}
	switch m := buf[1]; {
	case m == methodNone:
		if d.isolating {
			d.warnNoIsolation("it takes no authentication")
		}
		return nil
	case m == methodPassword && len(greeting) == 4:
	case m == methodRefused && len(greeting) == 3:
		return fmt.Errorf("%w: proxy %s requires authentication (give USER:PASS in the proxy URL)", errSOCKS, d.proxyAddr)
	case m == methodRefused:
		return fmt.Errorf("%w: proxy %s accepts neither no authentication nor username/password", errSOCKS, d.proxyAddr)
	default:
		return fmt.Errorf("%w: proxy %s chose authentication method 0x%02x, which was not offered", errSOCKS, d.proxyAddr, m)
	}
	auth := make([]byte, 0, 3+len(user)+len(pass))
	auth = append(auth, 1, byte(len(user)))
	auth = append(auth, user...)
	auth = append(auth, byte(len(pass)))
	auth = append(auth, pass...)
	if _, err := c.Write(auth); err != nil {
		return fmt.Errorf("%w: proxy %s: %w", errSOCKS, d.proxyAddr, err)
	}
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return fmt.Errorf("%w: proxy %s: reading authentication status: %w", errSOCKS, d.proxyAddr, err)
	}
	if buf[1] != 0 {
		if d.isolating {
			return fmt.Errorf("%w: proxy %s rejected the credentials made up for isolation: it wants an account (give USER:PASS in the proxy URL)",
				errSOCKS, d.proxyAddr)
		}
		return fmt.Errorf("%w: proxy %s rejected the credentials", errSOCKS, d.proxyAddr)
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
		return fmt.Errorf("%w: proxy %s: %w", errSOCKS, d.proxyAddr, err)
	}
	// Reply: VER REP RSV ATYP BND.ADDR BND.PORT.
	var head [5]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return fmt.Errorf("%w: proxy %s: reading CONNECT reply for %s: %w", errSOCKS, d.proxyAddr, target, err)
	}
	if head[0] != 5 {
		return fmt.Errorf("%w: proxy %s: bad reply version %d", errSOCKS, d.proxyAddr, head[0])
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
		return fmt.Errorf("%w: proxy %s: bad address type %d in reply", errSOCKS, d.proxyAddr, head[3])
	}
	if _, err := io.ReadFull(c, make([]byte, rest)); err != nil {
		return fmt.Errorf("%w: proxy %s: reading CONNECT reply: %w", errSOCKS, d.proxyAddr, err)
	}
	if d.optimistic {
		// Nothing to send that would carry the ACK of the reply: without
		// one, Tor (Nagle on, no TCP_NODELAY) holds the answer until the
		// delayed ACK, 40 ms later.
		quickACK(c)
	} else {
		if _, err := c.Write(payload); err != nil {
			return fmt.Errorf("%w: writing to %s: %w", errSOCKS, target, err)
		}
	}
	return nil
}

// connectRequest encodes CONNECT target: an IP literal as an address, any
// other host as a domain name for the proxy to resolve.
func connectRequest(target string) ([]byte, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", errSOCKS, target, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: bad port", errSOCKS, target)
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
			return nil, fmt.Errorf("%w: target host %q: bad length", errSOCKS, host)
		}
		req = append(req, 3, byte(len(host)))
		req = append(req, host...)
	}
	return append(req, byte(port>>8), byte(port)), nil
}

// readFullAcked is io.ReadFull, acknowledging at once (quickACK) each read
// that leaves buf short: the sender's next segment, if small, waits for
// that ACK (Nagle), and Tor writes an answer that spans cells in several
// writes.
func readFullAcked(c net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if n == len(buf) {
			return n, nil
		}
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if m > 0 {
			quickACK(c)
		}
	}
	return n, nil
}
