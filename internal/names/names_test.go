package names

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestNewSuffixes(t *testing.T) {
	for _, s := range []string{
		"lab.test", "lab.test.", "LAB.Test", "corp.internal", "10.in-addr.arpa.", "_tcp.example", "xn--bcher-kva.example",
		"a", ".", strings.Repeat("a", 63) + ".example",
		strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 61), // 253 characters
	} {
		if _, err := New(Config{Forward: []string{s}}); err != nil {
			t.Errorf("New(Forward %q): %v", s, err)
		}
	}
	for s, why := range map[string]string{
		"":                                   "empty",
		"..":                                 "empty label",
		".lab.test":                          "empty label",
		"lab..test":                          "empty label",
		"lab.test..":                         "empty label",
		strings.Repeat("a", 64) + ".example": "label longer than 63",
		strings.Repeat("a.", 127) + "a":      "longer than 253",
		"bücher.example":                     "xn--",
		"lab test":                           "character ' '",
		`lab\.test`:                          "character '\\\\'",
		"*.lab.test":                         "character '*'",
	} {
		_, err := New(Config{Forward: []string{"ok.test", s}})
		if !errors.Is(err, ErrSuffix) || !strings.Contains(err.Error(), why) {
			t.Errorf("New(Forward %q): %v, want ErrSuffix saying %q", s, err, why)
		}
	}
}

// TestForwarded: suffix matching is by whole labels, case-insensitive.
func TestForwarded(t *testing.T) {
	p := mustPolicy(t, Config{Forward: []string{"lab.test", "A.B.C.example", "lab.test."}})
	for name, want := range map[string]bool{
		"lab.test.":         true,
		"LAB.TEST.":         true,
		"x.y.lab.test.":     true,
		"xlab.test.":        false,
		"test.":             false,
		"lab.test.org.":     false,
		"a.b.c.example.":    true,
		"z.A.b.C.EXAMPLE.":  true,
		"b.c.example.":      false,
		".":                 false,
		"lab.test.example.": false,
	} {
		if got := p.forwarded(parsedName(t, name)); got != want {
			t.Errorf("forwarded(%s) = %v, want %v", name, got, want)
		}
	}
}

// TestInternalRanges checks the edges of every block.
func TestInternalRanges(t *testing.T) {
	for _, c := range []struct {
		addr string
		why  string // "" for not internal
	}{
		{"0.0.0.0", "this network"}, {"0.255.255.255", "this network"}, {"1.0.0.0", ""},
		{"9.255.255.255", ""}, {"10.0.0.0", "RFC 1918"}, {"10.255.255.255", "RFC 1918"}, {"11.0.0.0", ""},
		{"100.63.255.255", ""}, {"100.64.0.0", "RFC 6598"}, {"100.127.255.255", "RFC 6598"}, {"100.128.0.0", ""},
		{"126.255.255.255", ""}, {"127.0.0.0", "loopback"}, {"127.255.255.255", "loopback"}, {"128.0.0.0", ""},
		{"169.253.255.255", ""}, {"169.254.0.0", "link-local"}, {"169.254.169.254", "link-local"}, {"169.255.0.0", ""},
		{"172.15.255.255", ""}, {"172.16.0.0", "RFC 1918"}, {"172.31.255.255", "RFC 1918"}, {"172.32.0.0", ""},
		{"192.167.255.255", ""}, {"192.168.0.0", "RFC 1918"}, {"192.168.255.255", "RFC 1918"}, {"192.169.0.0", ""},
		{"255.255.255.255", "broadcast"}, {"255.255.255.254", ""}, {"224.0.0.251", ""}, {"192.0.2.1", ""},
		{"198.18.0.1", ""}, {"192.0.0.170", ""}, {"8.8.8.8", ""},
		{"::", "unspecified"}, {"::1", "loopback"}, {"::2", "IPv4-compatible"}, {"::ffff:0.0.0.1", "IPv4-mapped"},
		{"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""}, {"fc00::", "unique local"}, {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique local"},
		{"fe00::", ""}, {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""}, {"fe80::", "link-local"}, {"febf::1", "link-local"},
		{"fec0::", "site-local"}, {"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "site-local"}, {"ff02::1", ""},
		{"::ffff:192.168.1.1", "IPv4-mapped (RFC 4291 section 2.5.5.2) form of private"}, {"::ffff:1.1.1.1", ""},
		{"::10.0.0.1", "IPv4-compatible"}, {"::1.1.1.1", ""},
		{"64:ff9b::7f00:1", "NAT64"}, {"64:ff9b::101:101", ""}, {"64:ff9b:1::a00:1", ""},
		{"2002:a9fe:a9fe::1", "6to4"}, {"2002:0101:0101::1", ""},
		{"2001:db8::1", ""}, {"2001::1", ""}, {"2606:4700::1111", ""},
	} {
		a := netip.MustParseAddr(c.addr)
		why := whyInternal(a)
		if isInternal(a) != (c.why != "") || c.why == "" && why != "" || !strings.Contains(why, c.why) {
			t.Errorf("%s: internal %v, %q; want %q", c.addr, isInternal(a), why, c.why)
		}
	}
}

// TestBlockMasks: the value-and-mask form of each block agrees with
// netip.Prefix.Contains, on random addresses and on each block's edges.
func TestBlockMasks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var blocks []*addrRange
	for i := range internalV4 {
		blocks = append(blocks, &internalV4[i])
	}
	for i := range internalV6 {
		blocks = append(blocks, &internalV6[i])
	}
	for i := range embeddingV6 {
		blocks = append(blocks, &embeddingV6[i].addrRange)
	}
	for _, r := range blocks {
		start := r.prefix.Masked().Addr()
		last := lastAddr(r.prefix)
		addrs := []netip.Addr{start, start.Prev(), last, last.Next()}
		for range 1000 {
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			a := netip.AddrFrom16(b)
			if start.Is4() {
				a = netip.AddrFrom4([4]byte(b[:4]))
			}
			// Keep the prefix's first bytes half of the time, to land inside.
			if rng.IntN(2) == 0 {
				s := start.AsSlice()
				copy(b[:], s[:r.prefix.Bits()/8])
				a, _ = netip.AddrFromSlice(b[:len(s)])
			}
			addrs = append(addrs, a)
		}
		for _, a := range addrs {
			if !a.IsValid() || a.Is4() != start.Is4() {
				continue
			}
			b := a.As16()
			hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
			if a.Is4() {
				hi, lo = 0, uint64(binary.BigEndian.Uint32(b[12:]))
			}
			if got, want := r.contains(hi, lo), r.prefix.Contains(a); got != want {
				t.Fatalf("%s contains %s: %v, want %v", r.prefix, a, got, want)
			}
		}
	}
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
