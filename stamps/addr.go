package stamps

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NormalizeAddr turns a resolver or listen address written the
// dnscrypt-proxy 1.x way into a canonical "ip:port" string, IPv6 in
// brackets, suitable for [net.Dial] and for a stamp.
//
// The 1.x rule is:
//
//   - bracketed, or with exactly one colon: "[ipv6]:port" or "ipv4:port";
//   - unbracketed with several colons: a bare IPv6 address, so
//     "2001:db8::1:443" is one address, not an address and a port;
//   - anything else: a bare IPv4 address.
//
// A bare address, and "[ipv6]" without a port, get defaultPort (1.x gave
// "[ipv6]" port 0). Host names are not accepted, nor zones
// ("fe80::1%eth0"), ports outside 1..65535, or IPv4 forms other than
// dotted decimal. Errors wrap [ErrInvalidAddress].
func NormalizeAddr(addr string, defaultPort int) (string, error) {
	ap, err := parseAddr(addr, defaultPort)
	if err != nil {
		return "", err
	}
	return ap.String(), nil
}

// maxAddrLen bounds the text parsed as an address; the longest valid form,
// "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535", is 53 bytes.
const maxAddrLen = 64

func parseAddr(addr string, defaultPort int) (netip.AddrPort, error) {
	if defaultPort < 1 || defaultPort > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%w: default port %d out of range", ErrInvalidAddress, defaultPort)
	}
	if addr == "" {
		return netip.AddrPort{}, fmt.Errorf("%w: empty", ErrInvalidAddress)
	}
	if len(addr) > maxAddrLen {
		return netip.AddrPort{}, fmt.Errorf("%w: %d bytes long", ErrInvalidAddress, len(addr))
	}
	host, portStr := addr, ""
	switch colons := strings.Count(addr, ":"); {
	case strings.HasPrefix(addr, "["):
		end := strings.IndexByte(addr, ']')
		if end < 0 {
			return netip.AddrPort{}, fmt.Errorf("%w: %q: missing ']'", ErrInvalidAddress, addr)
		}
		host = addr[1:end]
		switch rest := addr[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			portStr = rest[1:]
			if portStr == "" {
				return netip.AddrPort{}, fmt.Errorf("%w: %q: empty port", ErrInvalidAddress, addr)
			}
		default:
			return netip.AddrPort{}, fmt.Errorf("%w: %q: unexpected text after ']'", ErrInvalidAddress, addr)
		}
	case colons == 1:
		i := strings.IndexByte(addr, ':')
		host, portStr = addr[:i], addr[i+1:]
		if portStr == "" {
			return netip.AddrPort{}, fmt.Errorf("%w: %q: empty port", ErrInvalidAddress, addr)
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %q is not an IP address", ErrInvalidAddress, host)
	}
	if ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: zones are not supported", ErrInvalidAddress, addr)
	}
	if strings.HasPrefix(addr, "[") && !ip.Is6() {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: brackets around an IPv4 address", ErrInvalidAddress, addr)
	}
	port := uint64(defaultPort)
	if portStr != "" {
		port, err = parsePort(portStr)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%w: %q: %w", ErrInvalidAddress, addr, err)
		}
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// parsePort accepts decimal digits only, 1..65535.
func parsePort(s string) (uint64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %q is not a decimal number", s)
		}
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("port %q out of range 1..65535", s)
	}
	return p, nil
}
