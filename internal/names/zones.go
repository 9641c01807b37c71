package names

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// zone is a zone answered locally, as unbound serves its default local zones
// (local-zone: NAME static, with a SOA and an NS record at the apex).
type zone struct {
	apex string // presentation form, lower case, final dot
	why  string // the reason, for logs and the README

	// loopback: the apex and every name under it have A 127.0.0.1 and
	// AAAA ::1 (localhost, RFC 6761 section 6.3).
	loopback bool
	// ptr, if set, is the one name of the zone with a PTR record pointing
	// at localhost.: the reverse of 127.0.0.1 or ::1. Given in presentation
	// form, it is kept in lower-case wire form.
	ptr string

	wire string // apex in lower-case wire form
}

// Reasons shared by several zones.
const (
	whyRFC1918 = "reverse zone of private address space (RFC 1918, RFC 6303 section 4.1)"
	whyCGNAT   = "reverse zone of shared address space 100.64.0.0/10 (RFC 6598, RFC 7793)"
	whyLinkV6  = "reverse zone of IPv6 link-local fe80::/10 (RFC 4291, RFC 6303 section 4.5)"
)

// localZones lists every zone answered locally. The special-use names come
// from the IANA Special-Use Domain Names registry (RFC 6761) and Tor; the
// reverse zones are those of RFC 6303 and RFC 7793, which unbound also
// serves by default (its as112 list), plus c.f.ip6.arpa. Zones do not nest.
var localZones = buildZones(slices.Concat([]zone{
	{apex: "localhost.", loopback: true,
		why: "loopback name (RFC 6761 section 6.3)"},
	{apex: "onion.",
		why: "Tor onion service (RFC 7686 section 2)"},
	{apex: "exit.",
		why: "Tor exit notation (Tor's address-spec, not for DNS)"},
	{apex: "local.",
		why: "multicast DNS name (RFC 6762 sections 3 and 22.1)"},
	{apex: "internal.",
		why: "private-use top-level domain, never delegated (ICANN resolution 2024.07.29.06, SAC113)"},
	{apex: "home.arpa.",
		why: "residential home network name (RFC 8375)"},
	{apex: "invalid.",
		why: "always invalid (RFC 6761 section 6.4)"},
	{apex: "alt.",
		why: "non-DNS namespace (RFC 9476)"},
	{apex: "resolver.arpa.",
		why: "names of the local resolver itself, for discovery (RFC 9462)"},
	{apex: "service.arpa.",
		why: "local service registration (RFC 9665)"},

	{apex: "10.in-addr.arpa.", why: whyRFC1918},
	// 16.172 ... 31.172: below.
	{apex: "168.192.in-addr.arpa.", why: whyRFC1918},
	{apex: "0.in-addr.arpa.",
		why: "reverse zone of \"this network\" 0.0.0.0/8 (RFC 1122, RFC 6303 section 4.2)"},
	{apex: "127.in-addr.arpa.", ptr: "1.0.0.127.in-addr.arpa.",
		why: "reverse zone of loopback 127.0.0.0/8 (RFC 1122, RFC 6303 section 4.2)"},
	{apex: "254.169.in-addr.arpa.",
		why: "reverse zone of link-local 169.254.0.0/16 (RFC 3927, RFC 6303 section 4.2)"},
	{apex: "2.0.192.in-addr.arpa.",
		why: "reverse zone of TEST-NET-1 192.0.2.0/24 (RFC 5737, RFC 6303 section 4.2)"},
	{apex: "100.51.198.in-addr.arpa.",
		why: "reverse zone of TEST-NET-2 198.51.100.0/24 (RFC 5737, RFC 6303 section 4.2)"},
	{apex: "113.0.203.in-addr.arpa.",
		why: "reverse zone of TEST-NET-3 203.0.113.0/24 (RFC 5737, RFC 6303 section 4.2)"},
	{apex: "255.255.255.255.in-addr.arpa.",
		why: "reverse of the limited broadcast address (RFC 919, RFC 6303 section 4.2)"},
	// 64.100 ... 127.100: below.

	{apex: reverse("::"),
		why: "reverse of the IPv6 unspecified address :: (RFC 4291, RFC 6303 section 4.3)"},
	{apex: reverse("::1"), ptr: reverse("::1"),
		why: "reverse of the IPv6 loopback address ::1 (RFC 4291, RFC 6303 section 4.3)"},
	{apex: "d.f.ip6.arpa.",
		why: "reverse zone of IPv6 unique-local fd00::/8 (RFC 4193, RFC 6303 section 4.4)"},
	{apex: "c.f.ip6.arpa.",
		why: "reverse zone of fc00::/8, the unassigned half of unique-local fc00::/7 (RFC 4193)"},
	{apex: "8.e.f.ip6.arpa.", why: whyLinkV6},
	{apex: "9.e.f.ip6.arpa.", why: whyLinkV6},
	{apex: "a.e.f.ip6.arpa.", why: whyLinkV6},
	{apex: "b.e.f.ip6.arpa.", why: whyLinkV6},
	{apex: "8.b.d.0.1.0.0.2.ip6.arpa.",
		why: "reverse zone of the IPv6 documentation prefix 2001:db8::/32 (RFC 3849, RFC 6303 section 4.6)"},
}, numbered("%d.172.in-addr.arpa.", 16, 31, whyRFC1918),
	numbered("%d.100.in-addr.arpa.", 64, 127, whyCGNAT)))

// numbered returns the zones format gives for the numbers from first to
// last, all for the reason why.
func numbered(format string, first, last int, why string) []zone {
	var zs []zone
	for i := first; i <= last; i++ {
		zs = append(zs, zone{apex: fmt.Sprintf(format, i), why: why})
	}
	return zs
}

// reverse returns the ip6.arpa name of an IPv6 address.
func reverse(addr string) string {
	name, err := dns.ReverseAddr(addr)
	if err != nil {
		panic(fmt.Sprintf("names: reverse of %q: %v", addr, err))
	}
	return name
}

// zoneTable indexes localZones for lookups on wire names.
type zoneTable struct {
	list   []*zone          // in the order of the source list
	byApex map[string]*zone // lower-case wire apex
	tlds   map[string]bool  // lower-case wire top-level labels of the apexes
	depths []int            // label counts of the apexes, ascending
}

// buildZones indexes zs. It panics on a malformed or nested zone: the table
// is a constant of the program.
func buildZones(zs []zone) *zoneTable {
	t := &zoneTable{byApex: make(map[string]*zone), tlds: make(map[string]bool)}
	for _, z := range zs {
		w, err := suffixWire(z.apex)
		if err != nil || z.apex != strings.ToLower(z.apex) || !strings.HasSuffix(z.apex, ".") {
			panic(fmt.Sprintf("names: bad local zone %q: %v", z.apex, err))
		}
		z.wire = string(w)
		if z.ptr != "" {
			pw, err := suffixWire(z.ptr)
			if err != nil || !strings.HasSuffix(string(pw), z.wire) {
				panic(fmt.Sprintf("names: bad PTR name %q in %q", z.ptr, z.apex))
			}
			z.ptr = string(pw)
		}
		for other := range t.byApex {
			// A suffix of the wire form: every nesting shows.
			if strings.HasSuffix(other, z.wire) || strings.HasSuffix(z.wire, other) {
				panic(fmt.Sprintf("names: local zone %q overlaps another", z.apex))
			}
		}
		d := countLabels(w)
		t.byApex[z.wire] = &z
		t.list = append(t.list, &z)
		t.tlds[string(w[labelStart(w, d-1):])] = true
		if !slices.Contains(t.depths, d) {
			t.depths = append(t.depths, d)
		}
	}
	slices.Sort(t.depths)
	return t
}

// labelStart returns the offset of label i (0 first) of the wire name w.
func labelStart(w []byte, i int) int {
	off := 0
	for ; i > 0; i-- {
		off += 1 + int(w[off])
	}
	return off
}

// lookupZone returns the local zone n is equal to or under, or nil.
func lookupZone(n *wireName) *zone {
	if n.labels == 0 || !localZones.tlds[string(n.suffix(1))] {
		return nil
	}
	for _, d := range localZones.depths {
		if d > n.labels {
			break
		}
		if z := localZones.byApex[string(n.suffix(d))]; z != nil {
			return z
		}
	}
	return nil
}
