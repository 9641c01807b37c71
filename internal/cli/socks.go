package cli

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

// Tor's defaults.
const (
	torSOCKSAddr     = "127.0.0.1:9050"
	defaultSOCKSPort = 1080
	maxSOCKSCredLen  = 255 // RFC 1929
	maxUnixPathLen   = 107 // Linux's sun_path, less its NUL
)

// socksURL is a parsed --proxy value.
type socksURL struct {
	Addr           string // "ip:port", IPv6 in brackets; or a Unix-domain socket's path
	User, Password string
}

// parseProxyURL parses "socks5://[user:password@]ip[:port]" (socks5h://
// too, and a bare "ip:port"), or "socks5://[user:password@]/path" for a
// Unix-domain socket (a bare "/path" too). The host must be an IP address:
// a name would need a local lookup, which a Tor setup must never make. The
// port defaults to 1080.
func parseProxyURL(s string) (socksURL, error) {
	bad := func(why string) (socksURL, error) {
		return socksURL{}, valueErrorf("Invalid proxy: [%s]: %s", s, why)
	}
	raw := s
	if !strings.Contains(raw, "://") {
		raw = "socks5://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a URL (want socks5://[USER:PASS@]IP:PORT)")
	}
	switch strings.ToLower(u.Scheme) {
	case "socks5", "socks5h":
	default:
		return bad(fmt.Sprintf("unsupported scheme %q (want socks5)", u.Scheme))
	}
	if u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" || u.Host != "" && u.Path != "" && u.Path != "/" {
		return bad("unexpected text after the address")
	}
	su := socksURL{}
	var why string
	if su.User, su.Password, why = credentials(u.User); why != "" {
		return bad(why)
	}
	host := u.Hostname()
	switch {
	case u.Host == "" && len(u.Path) > 1:
		// socks5:///path: a Unix-domain socket (Tor's SocksPort unix:PATH).
		if len(u.Path) > maxUnixPathLen {
			return bad(fmt.Sprintf("socket path longer than %d bytes", maxUnixPathLen))
		}
		if strings.ContainsRune(u.Path, 0) {
			return bad("NUL in the socket path")
		}
		su.Addr = u.Path
		return su, nil
	case host == "":
		return bad("no proxy address")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return bad(fmt.Sprintf("%q is not an IP address (a host name would need a local DNS lookup)", host))
	}
	port := defaultSOCKSPort
	if p := u.Port(); p != "" {
		n, ok := parseDecimal(p)
		if !ok || n == 0 || n > 65535 {
			return bad(fmt.Sprintf("port %q out of range 1..65535", p))
		}
		port = int(n)
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	su.Addr = netip.AddrPortFrom(ip.Unmap(), uint16(port)).String()
	return su, nil
}

// credentials returns the URL's username and password, if any, or why
// they are bad.
func credentials(u *url.Userinfo) (user, pass, why string) {
	if u == nil {
		return "", "", ""
	}
	user = u.Username()
	pass, _ = u.Password()
	if user == "" {
		return "", "", "empty user name"
	}
	if len(user) > maxSOCKSCredLen || len(pass) > maxSOCKSCredLen {
		return "", "", fmt.Sprintf("user name and password are limited to %d bytes", maxSOCKSCredLen)
	}
	if pass == "" {
		// RFC 1929: a user name and a password of 1..255 bytes each.
		return "", "", "a user name needs a password (RFC 1929: 1..255 bytes; socks5://USER:PASS@IP:PORT)"
	}
	return user, pass, ""
}

// normalizeHostPort checks a "host[:port]" resolver address for use
// through a proxy, which resolves the name itself, and adds the default
// port.
func normalizeHostPort(s string, defaultPort int) (string, error) {
	host, port := s, strconv.Itoa(defaultPort)
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		n, ok := parseDecimal(port)
		if !ok || n == 0 || n > 65535 {
			return "", fmt.Errorf("port %q out of range 1..65535", port)
		}
		port = strconv.FormatUint(n, 10) // "0443" is 443
	}
	if err := checkHostName(host); err != nil {
		return "", err
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), port), nil
}

// checkHostName accepts a host name (see stamps.ValidHostName), ".onion"
// names included.
func checkHostName(host string) error {
	if !stamps.ValidHostName(host) {
		return fmt.Errorf("%q is not a host name", host)
	}
	return nil
}
