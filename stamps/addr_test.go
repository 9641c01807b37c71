package stamps

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		port int
		want string
	}{
		// Bare addresses get the default port.
		{"192.0.2.1", 443, "192.0.2.1:443"},
		{"127.0.0.1", 53, "127.0.0.1:53"},
		{"0.0.0.0", 53, "0.0.0.0:53"},
		// Several colons without brackets: a bare IPv6 address.
		{"::1", 53, "[::1]:53"},
		{"2001:db8::1", 443, "[2001:db8::1]:443"},
		{"2001:DB8:0:0:0:0:0:1", 443, "[2001:db8::1]:443"},
		{"::ffff:192.0.2.1", 443, "[::ffff:192.0.2.1]:443"},
		{"::", 53, "[::]:53"},
		// The 1.x trap: this is one IPv6 address, not an address and a port.
		{"2001:db8::1:443", 443, "[2001:db8::1:443]:443"},
		// Exactly one colon: ipv4:port.
		{"192.0.2.1:5353", 443, "192.0.2.1:5353"},
		{"192.0.2.1:65535", 443, "192.0.2.1:65535"},
		{"192.0.2.1:1", 443, "192.0.2.1:1"},
		{"192.0.2.1:00053", 443, "192.0.2.1:53"},
		// Brackets: [ipv6]:port, or [ipv6] with the default port.
		{"[2001:db8::1]:8443", 443, "[2001:db8::1]:8443"},
		{"[::1]:53", 443, "[::1]:53"},
		{"[::1]", 5300, "[::1]:5300"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeAddr(tc.in, tc.port)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			// The result is a fixed point.
			again, err := NormalizeAddr(got, tc.port)
			if err != nil || again != got {
				t.Errorf("NormalizeAddr(%q): got %q, %v; want %q", got, again, err, got)
			}
		})
	}
}

func TestNormalizeAddrErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		port int
	}{
		{"", 443},
		{"localhost", 53},
		{"localhost:53", 53},
		{"resolver.example.com:443", 443},
		{"192.0.2.1:", 443},
		{"192.0.2.1:0", 443},
		{"192.0.2.1:65536", 443},
		{"192.0.2.1:-1", 443},
		{"192.0.2.1:+53", 443},
		{"192.0.2.1:0x35", 443},
		{"192.0.2.1: 53", 443},
		{" 192.0.2.1", 443},
		{"192.0.2.1 ", 443},
		{"192.0.2", 443},
		{"127.1", 443},
		{"0300.0.2.1", 443},
		{"192.0.2.256", 443},
		{"[192.0.2.1]:443", 443},
		{"[192.0.2.1]", 443},
		{"[2001:db8::1", 443},
		{"[2001:db8::1]:", 443},
		{"[2001:db8::1]443", 443},
		{"[2001:db8::1]:443:1", 443},
		{"[]:443", 443},
		{"2001:db8::1:443:", 443},
		{"fe80::1%eth0", 443},
		{"[fe80::1%eth0]:443", 443},
		{":443", 443},
		{"192.0.2.1", 0},
		{"192.0.2.1", 65536},
		{"192.0.2.1", -1},
		{strings.Repeat("1", 100), 443},
		{"2001:db8::1:" + strings.Repeat("0", 60), 443},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeAddr(tc.in, tc.port)
			if !errors.Is(err, ErrInvalidAddress) {
				t.Errorf("NormalizeAddr(%q, %d): got %q, %v; want an error wrapping ErrInvalidAddress", tc.in, tc.port, got, err)
			}
		})
	}
}
