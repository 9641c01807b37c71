package names

import (
	"encoding/binary"
	"net/netip"
)

// addrRange is a block of internal addresses: addresses that reach the local
// host or its networks, which a public name must not point at (DNS
// rebinding, probing the local network from a browser). The list follows
// Tor's tor_addr_is_internal (ClientDNSRejectInternalAddresses) with
// carrier-grade NAT space and the limited broadcast address added.
//
// Not internal, on purpose: multicast (224.0.0.0/4, ff00::/8), which no TCP
// connection reaches; the documentation blocks (192.0.2.0/24,
// 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32), which route nowhere and
// which labs and tests use; 198.18.0.0/15 (benchmarking) and 240.0.0.0/4
// (reserved); 192.0.0.0/24, where ipv4only.arpa's public addresses live
// (RFC 8880); Teredo (2001::/32), whose embedded addresses are obfuscated.
type addrRange struct {
	prefix netip.Prefix
	why    string
	// The prefix as a 128-bit value and mask, for checks that cost a few
	// nanoseconds; an IPv4 prefix is in the low 32 bits of lo.
	hi, lo, mhi, mlo uint64
}

// block returns the addrRange of prefix; it panics on a malformed prefix
// (the tables are constants of the program).
func block(prefix, why string) addrRange {
	p := netip.MustParsePrefix(prefix)
	r := addrRange{prefix: p, why: why}
	bits := p.Bits()
	if p.Addr().Is4() {
		b := p.Addr().As4()
		r.lo = uint64(binary.BigEndian.Uint32(b[:]))
		r.mlo = uint64(^uint32(0) << (32 - bits))
		return r
	}
	b := p.Addr().As16()
	r.hi, r.lo = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	r.mhi, r.mlo = ^uint64(0)<<(64-min(bits, 64)), ^uint64(0)<<(128-max(bits, 64))
	return r
}

// contains reports whether the address hi, lo (an IPv4 address in the low
// 32 bits of lo) is in r.
func (r *addrRange) contains(hi, lo uint64) bool {
	return hi&r.mhi == r.hi && lo&r.mlo == r.lo
}

const whyRFC1918Addr = "private network (RFC 1918)"

// internalV4 lists the internal IPv4 blocks.
var internalV4 = []addrRange{
	block("0.0.0.0/8", "\"this network\", 0.0.0.0 reaches the local host (RFC 1122 section 3.2.1.3)"),
	block("10.0.0.0/8", whyRFC1918Addr),
	block("100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"),
	block("127.0.0.0/8", "loopback (RFC 1122 section 3.2.1.3)"),
	block("169.254.0.0/16", "link-local (RFC 3927)"),
	block("172.16.0.0/12", whyRFC1918Addr),
	block("192.168.0.0/16", whyRFC1918Addr),
	block("255.255.255.255/32", "limited broadcast (RFC 919, RFC 8190)"),
}

// internalV6 lists the internal IPv6 blocks.
var internalV6 = []addrRange{
	block("::/128", "unspecified address, :: reaches the local host (RFC 4291 section 2.5.2)"),
	block("::1/128", "loopback (RFC 4291 section 2.5.3)"),
	block("fc00::/7", "unique local (RFC 4193)"),
	block("fe80::/10", "link-local (RFC 4291 section 2.5.6)"),
	block("fec0::/10", "site-local, deprecated (RFC 3879)"),
}

// embeddingV6 lists the IPv6 blocks whose addresses carry an IPv4 address,
// at byte at: such an address is internal when its IPv4 address is.
var embeddingV6 = []struct {
	addrRange
	at int
}{
	{block("::ffff:0:0/96", "IPv4-mapped (RFC 4291 section 2.5.5.2)"), 12},
	{block("::/96", "IPv4-compatible, deprecated (RFC 4291 section 2.5.5.1)"), 12},
	{block("64:ff9b::/96", "NAT64 well-known prefix (RFC 6052)"), 12},
	{block("2002::/16", "6to4 (RFC 3056)"), 2},
}

// internalRange returns the internal block a falls in, or nil. For an IPv6
// address that embeds an internal IPv4 address, via is the embedding block
// and r the IPv4 block. It does not allocate.
func internalRange(a netip.Addr) (r, via *addrRange) {
	if a.Is4() {
		b := a.As4()
		return internalV4At(b[:]), nil
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	for i := range internalV6 {
		if internalV6[i].contains(hi, lo) {
			return &internalV6[i], nil
		}
	}
	for i := range embeddingV6 {
		e := &embeddingV6[i]
		if e.contains(hi, lo) {
			if r := internalV4At(b[e.at : e.at+4]); r != nil {
				return r, &e.addrRange
			}
			return nil, nil
		}
	}
	return nil, nil
}

// internalV4At returns the internal block of the IPv4 address b, or nil.
func internalV4At(b []byte) *addrRange {
	lo := uint64(binary.BigEndian.Uint32(b))
	for i := range internalV4 {
		if internalV4[i].contains(0, lo) {
			return &internalV4[i]
		}
	}
	return nil
}

// isInternal reports whether a is an internal address.
func isInternal(a netip.Addr) bool {
	r, _ := internalRange(a)
	return r != nil
}

// whyInternal says why a is internal, or returns "" if it is not.
func whyInternal(a netip.Addr) string {
	switch r, via := internalRange(a); {
	case r == nil:
		return ""
	case via == nil:
		return r.why
	default:
		return via.why + " form of " + r.why
	}
}
