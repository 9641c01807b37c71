package dnscrypt

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestCheckProviderName(t *testing.T) {
	l63 := strings.Repeat("a", MaxLabelLen)
	longest := l63 + "." + l63 + "." + l63 + "." + strings.Repeat("b", 61) // 253 bytes
	for _, ok := range []string{
		"2.dnscrypt-cert.example.com", "2.dnscrypt-cert.example.com.", "2.x", "x",
		"2.dnscrypt-cert." + l63 + ".example", longest, longest + ".",
	} {
		if err := CheckProviderName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", ".", "..", ".x", "2.dnscrypt-cert..example", "2.x.ex\\ample", "2.x.ex\\046ample", "2.x y", "2.é.example",
		"2.x\x00", "2.x\x7f", "2.dnscrypt-cert." + l63 + "a.example", strings.Repeat("a.", 130),
		longest + "b", longest + "b.",
	} {
		if err := CheckProviderName(bad); !errors.Is(err, ErrProviderName) {
			t.Errorf("%q: got %v, want ErrProviderName", bad, err)
		}
	}
}

// FuzzCheckProviderName compares CheckProviderName with the rule it
// replaced in package certs, which asked miekg/dns: printable ASCII
// without space or backslash, not the root, and dns.IsDomainName. The one
// difference is on purpose: miekg/dns allows names of 255 and 256 bytes
// with the final dot (257 in wire form), RFC 1035 only up to 254.
func FuzzCheckProviderName(f *testing.F) {
	for _, s := range []string{"2.dnscrypt-cert.example.com", "2.x.", "", ".", "a..b", ".a", "a\\.b", "a b",
		strings.Repeat("a", 64), strings.Repeat("abc.", 64), strings.Repeat("a", 63) + "." + strings.Repeat("b", 190)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := CheckProviderName(name)
		if err != nil && !errors.Is(err, ErrProviderName) {
			t.Fatalf("%q: error %v does not wrap ErrProviderName", name, err)
		}
		_, domain := dns.IsDomainName(name)
		old := name != "" && dns.Fqdn(name) != "." && !strings.ContainsFunc(name, badNameRune) && domain
		want := old && len(dns.Fqdn(name)) <= MaxProviderNameLen+1
		if (err == nil) != want {
			t.Fatalf("%q: got %v, want ok=%v (miekg/dns rule: %v)", name, err, want, old)
		}
	})
}
