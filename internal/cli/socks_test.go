package cli

import (
	"strings"
	"testing"
)

// TestParseProxyURL: the forms of --proxy, IP and port or a Unix-domain
// socket's path, with or without credentials, and what is refused.
func TestParseProxyURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want socksURL
	}{
		{"socks5://127.0.0.1:9050", socksURL{Addr: "127.0.0.1:9050"}},
		{"127.0.0.1", socksURL{Addr: "127.0.0.1:1080"}},
		{"socks5h://u:p%40ss@[::1]:9150/", socksURL{Addr: "[::1]:9150", User: "u", Password: "p@ss"}},
		{"socks5:///run/tor/socks", socksURL{Addr: "/run/tor/socks"}},
		{"/run/tor/socks", socksURL{Addr: "/run/tor/socks"}},
		{"socks5://lab:labpass@/var/run/socks%20port", socksURL{Addr: "/var/run/socks port", User: "lab", Password: "labpass"}},
	} {
		got, err := parseProxyURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	long := "/" + strings.Repeat("s", maxUnixPathLen)
	for _, tc := range []struct{ in, why string }{
		{"socks5://", "no proxy address"},
		{"socks5:///", "no proxy address"},
		{"socks5://127.0.0.1:9050/run/tor/socks", "unexpected text after the address"},
		{"socks5:///run/tor/socks?x=1", "unexpected text after the address"},
		{"socks5://" + long, "socket path longer than 107 bytes"},
		{"socks5:///run/%00socks", "NUL in the socket path"},
		{"socks5://:p@/run/tor/socks", "empty user name"},
		{"socks5://" + strings.Repeat("u", 256) + "@127.0.0.1", "limited to 255 bytes"},
		{"socks5://tor.example:9050", "is not an IP address"},
	} {
		_, err := parseProxyURL(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%q: got %v, want an error saying %q", tc.in, err, tc.why)
		}
	}
}
