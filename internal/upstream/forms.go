package upstream

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/jedisct1/go-dnsstamps"

	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

// Default ports of the upstream kinds.
const (
	defaultDNSPort   = 53
	defaultTLSPort   = 853
	defaultHTTPSPort = 443
	defaultDoHPath   = "/dns-query"
)

// FromStamp returns the Spec of a DNS stamp parsed by stamps.Parse:
// DNSCrypt, plain DNS (asked over TCP: KindTCP), DNS over TLS and DNS over
// HTTPS. Other protocols (DoQ, ODoH, relays) are refused.
//
// For DoT and DoH, the stamp's host name (with an optional port, as in
// "dns.example:8443") is the TLS server name and, for DoH, the URL's; the
// connection goes to the stamp's IP address, if any, on the host name's
// port (else the address's, else the protocol's default); without an IP
// address it goes to the host name, which only a proxy may resolve.
// Certificate hashes become pins.
func FromStamp(st dnsstamps.ServerStamp) (Spec, error) {
	switch st.Proto {
	case dnsstamps.StampProtoTypeDNSCrypt:
		return Spec{Kind: KindDNSCrypt, Addr: st.ServerAddrStr, ProviderName: st.ProviderName,
			ProviderKey: ed25519.PublicKey(st.ServerPk)}, nil
	case dnsstamps.StampProtoTypePlain:
		if st.ServerAddrStr == "" {
			return Spec{}, errors.New("plain DNS stamp without an address")
		}
		return Spec{Kind: KindTCP, Addr: st.ServerAddrStr}, nil
	case dnsstamps.StampProtoTypeTLS, dnsstamps.StampProtoTypeDoH:
	default:
		return Spec{}, fmt.Errorf("%s stamps are not supported (DNSCrypt, plain DNS, DNS-over-TLS and DNS-over-HTTPS are)", st.Proto.String())
	}
	kind, port := KindTLS, defaultTLSPort
	if st.Proto == dnsstamps.StampProtoTypeDoH {
		kind, port = KindHTTPS, defaultHTTPSPort
	}
	host, hostPort, err := splitHost(st.ProviderName)
	if err != nil {
		return Spec{}, err
	}
	ip := ""
	if st.ServerAddrStr != "" {
		ap, err := netip.ParseAddrPort(st.ServerAddrStr)
		if err != nil {
			return Spec{}, fmt.Errorf("address %q: %w", st.ServerAddrStr, err)
		}
		ip, port = ap.Addr().String(), int(ap.Port())
	}
	if hostPort != 0 {
		port = hostPort
	}
	dial := cmp.Or(ip, host)
	s := Spec{Kind: kind, Name: st.ProviderName, Addr: net.JoinHostPort(dial, strconv.Itoa(port)), ServerName: host}
	for _, h := range st.Hashes {
		if len(h) != 32 {
			return Spec{}, fmt.Errorf("certificate hash of %d bytes, want 32 (SHA-256)", len(h))
		}
		s.Pins = append(s.Pins, [32]byte(h))
	}
	if kind == KindHTTPS {
		s.Path = cmp.Or(st.Path, defaultDoHPath)
		if !strings.HasPrefix(s.Path, "/") {
			return Spec{}, fmt.Errorf("path %q does not start with /", st.Path)
		}
	}
	return s, nil
}

// ParseURL returns the Spec of a resolver given as a URL:
//
//	tcp://HOST[:PORT]            plain DNS over TCP (port 53)
//	tls://HOST[:PORT]            DNS over TLS (port 853), HOST the TLS name
//	https://HOST[:PORT][/PATH]   DNS over HTTPS (port 443, path /dns-query)
//
// HOST is an IP address (IPv6 in brackets) or, through a proxy only, a
// host name, which then goes to the proxy (a .onion name, say). The TLS
// certificate is checked against the system's roots and HOST (stamps can
// pin a certificate instead).
func ParseURL(s string) (Spec, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Spec{}, fmt.Errorf("not a URL: %w", err)
	}
	var spec Spec
	port := 0
	switch strings.ToLower(u.Scheme) {
	case "tcp":
		spec.Kind, port = KindTCP, defaultDNSPort
	case "tls":
		spec.Kind, port = KindTLS, defaultTLSPort
	case "https":
		spec.Kind, port = KindHTTPS, defaultHTTPSPort
	default:
		return Spec{}, fmt.Errorf("unknown scheme %q (want tcp, tls or https)", u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Spec{}, errors.New("unexpected user, query or fragment")
	}
	if u.Path != "" && spec.Kind != KindHTTPS {
		return Spec{}, fmt.Errorf("unexpected path %q (only https:// has one)", u.Path)
	}
	host, hostPort, err := splitHost(u.Host)
	if err != nil {
		return Spec{}, err
	}
	if hostPort != 0 {
		port = hostPort
	}
	spec.Name = s
	spec.Addr = net.JoinHostPort(host, strconv.Itoa(port))
	if spec.Kind != KindTCP {
		spec.ServerName = host
	}
	if spec.Kind == KindHTTPS {
		spec.Path = cmp.Or(u.Path, defaultDoHPath)
	}
	return spec, nil
}

// IsURL reports whether s looks like one of ParseURL's forms.
func IsURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	switch strings.ToLower(scheme) {
	case "tcp", "tls", "https":
		return ok
	}
	return false
}

// splitHost splits "host[:port]" (IPv6 in brackets) and checks both: the
// host an IP address or a host name (letters, digits, '-' and '_' in labels
// of 1 to 63 bytes), the port 1..65535 (0 when absent).
func splitHost(hp string) (host string, port int, err error) {
	host = hp
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host = h
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return "", 0, fmt.Errorf("port %q out of range 1..65535", p)
		}
		port = int(n)
	} else if strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]") {
		host = hp[1 : len(hp)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", 0, fmt.Errorf("address %q with a zone", host)
		}
		return a.String(), port, nil
	}
	if !stamps.ValidHostName(host) {
		return "", 0, fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return strings.ToLower(strings.TrimSuffix(host, ".")), port, nil
}
