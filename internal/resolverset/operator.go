package resolverset

import (
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// Operator names who runs a resolver, for rotation, from what a resolvers
// list says of it: the registrable domain (the last two labels, three
// under a two-letter country domain with a short second level such as
// co.uk) of its URL if the list gives one, else of its provider or TLS
// name ("2.dnscrypt-cert.fr.dnscrypt.org" is dnscrypt.org), else its
// address's network (/24, /48). Resolvers of one operator see the same
// queries as far as privacy goes: rotation moves away from them.
func Operator(pageURL, name, addr string) string {
	if u, err := url.Parse(pageURL); err == nil && u.Hostname() != "" {
		if d := registrable(u.Hostname()); d != "" {
			return d
		}
	}
	if d := registrable(name); d != "" {
		return d
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		bits := 24
		if a.Is6() && !a.Is4In6() {
			bits = 48
		}
		p, _ := a.Unmap().Prefix(bits)
		return p.String()
	}
	return registrable(host)
}

// registrable returns the last two labels of a host name (three when the
// last is a two-letter country code and the one before it is at most three
// letters: co.uk, com.au), "" for an IP address or an empty name.
func registrable(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	labels := strings.Split(host, ".")
	n := 2
	if len(labels) >= 3 && len(labels[len(labels)-1]) == 2 && len(labels[len(labels)-2]) <= 3 {
		n = 3
	}
	if len(labels) < n {
		return host
	}
	return strings.Join(labels[len(labels)-n:], ".")
}
