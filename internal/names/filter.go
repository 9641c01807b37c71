package names

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Removal reports what Filter removed from an answer, for the caller's log.
// Its zero value means nothing was removed.
type Removal struct {
	// Name is the answer's question name in presentation form
	// ("rebind.example.com."), "" if it has no question.
	Name string
	// Addrs holds, in message order, the internal address of each removed
	// record: an A or AAAA record, or an SVCB or HTTPS record with an
	// internal address hint (its first).
	Addrs []netip.Addr
	// Signatures counts the RRSIG records removed with the RRsets they
	// covered.
	Signatures int
}

// String lists the removed addresses with the reason for each, as in
// "10.1.2.3 (private network (RFC 1918)), fe80::1 (link-local (RFC 4291
// section 2.5.6)); 1 RRSIG".
func (r Removal) String() string {
	var b strings.Builder
	for i, a := range r.Addrs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", a, whyInternal(a))
	}
	if r.Signatures > 0 {
		fmt.Fprintf(&b, "; %d RRSIG", r.Signatures)
	}
	return b.String()
}

// Filter removes internal addresses from an upstream answer and appends the
// result to dst: Tor's ClientDNSRejectInternalAddresses. It returns what it
// removed, so that the caller can log the name and why (at info level).
//
// When Config.FilterInternal is set, every A and AAAA record, in any section
// and of any class, whose address is internal (see the package doc: private,
// loopback, link-local, unique-local, carrier-grade NAT, unspecified,
// broadcast, and IPv6 forms of those IPv4 addresses) is removed, as is every
// SVCB or HTTPS record with such an address among its ipv4hint or ipv6hint
// values (unbound does the same), unless the question name is equal to or
// under a forwarded suffix or in a local zone (see Local). Then:
//
//   - the rest of the answer is kept: other addresses, CNAME records of the
//     chain, other sections. An answer left without addresses is an empty
//     NOERROR answer (NODATA) without a SOA record, which caches do not
//     keep (RFC 2308 section 5), rather than REFUSED, which would make
//     stubs and caches try other servers and fail slowly;
//   - RRSIG records that covered a changed RRset (same owner, type and
//     section) are removed too, and the AD bit is cleared: a validator in
//     front then finds the RRset unsigned in a signed zone and fails
//     closed (bogus, SERVFAIL), as it would with the broken signature, and
//     a client that does not validate is not handed signatures of records
//     it does not get;
//   - ID, flags (TC included), question and the OPT record are kept.
//
// Nothing else changes: an answer with nothing to remove is appended byte
// for byte, found by a scan of the wire bytes that does not allocate. Only
// when a record must go is the answer unpacked and packed again with
// [github.com/miekg/dns] (with name compression). Records are read in order
// up to the first one that cannot be located in the message (a truncated or
// malformed tail, which no parser reads past); such a tail is dropped if the
// answer is rebuilt.
//
// err, wrapping ErrMalformed, is returned only when records had to be
// removed from an answer that miekg/dns cannot unpack or pack (an A record
// of 5 bytes, say); the caller should then answer SERVFAIL. On error dst is
// returned unchanged. dst may be answer[:0]: the answer is then filtered in
// place. Call Filter before edns.PrepareAnswer, which truncates to the
// client's limit.
func (p *Policy) Filter(dst, answer []byte) (out []byte, rm Removal, err error) {
	if !p.filter || p.all || !hasInternal(answer) {
		return append(dst, answer...), Removal{}, nil
	}
	if len(answer) >= headerLen && be16(answer[4:]) > 0 {
		var n wireName
		if _, ok := n.parse(answer, headerLen); ok && p.exempt(&n) {
			return append(dst, answer...), Removal{}, nil
		}
	}
	return filterMsg(dst, answer)
}

// walker iterates over the records of a message, up to the first one that
// cannot be located.
type walker struct {
	msg   []byte
	off   int // start of the next record
	left  int // records counted in the header and not yet located
	found int // records located
}

// newWalker skips msg's header and questions. ok is false if they do not
// parse: then no record can be located.
func newWalker(msg []byte) (w walker, ok bool) {
	if len(msg) < headerLen {
		return w, false
	}
	w = walker{msg: msg, off: headerLen,
		left: int(be16(msg[6:])) + int(be16(msg[8:])) + int(be16(msg[10:]))}
	for range be16(msg[4:]) {
		end, ok := skipName(msg, w.off)
		if !ok || end+4 > len(msg) {
			return w, false
		}
		w.off = end + 4
	}
	return w, true
}

// next locates the next record; ok is false after the last one or at the
// first that does not fit in the message.
func (w *walker) next() (r rr, ok bool) {
	if w.left == 0 {
		return rr{}, false
	}
	if r, ok = scanRR(w.msg, w.off); !ok {
		return rr{}, false
	}
	w.off, w.left, w.found = r.end, w.left-1, w.found+1
	return r, true
}

// hasInternal reports whether a record that can be located in msg carries
// an internal address. It does not allocate.
func hasInternal(msg []byte) bool {
	w, ok := newWalker(msg)
	if !ok {
		return false
	}
	for {
		r, ok := w.next()
		if !ok {
			return false
		}
		rd := r.rdata(msg)
		switch r.rtype {
		case typeA:
			// An A record of more than 4 bytes is malformed, but some
			// parsers (Go's dnsmessage) read its first 4.
			if len(rd) >= 4 && isInternal(netip.AddrFrom4([4]byte(rd))) {
				return true
			}
		case typeAAAA:
			if len(rd) >= 16 && isInternal(netip.AddrFrom16([16]byte(rd))) {
				return true
			}
		case typeSVCB, typeHTTPS:
			if svcbInternal(rd) {
				return true
			}
		}
	}
}

// SvcParamKeys of the address hints (RFC 9460 section 14.3.2).
const (
	keyIPv4Hint = 4
	keyIPv6Hint = 6
)

// svcbInternal reports whether the SVCB or HTTPS RDATA rd has an internal
// address among its ipv4hint or ipv6hint values (RFC 9460 section 2.2:
// priority, uncompressed target name, then key, length, value triples). It
// reads what it can of malformed RDATA.
func svcbInternal(rd []byte) bool {
	off, ok := skipName(rd, 2)
	if !ok {
		return false
	}
	for off+4 <= len(rd) {
		key, n := be16(rd[off:]), int(be16(rd[off+2:]))
		v := rd[off+4 : min(off+4+n, len(rd))]
		off += 4 + n
		switch key {
		case keyIPv4Hint:
			for ; len(v) >= 4; v = v[4:] {
				if isInternal(netip.AddrFrom4([4]byte(v))) {
					return true
				}
			}
		case keyIPv6Hint:
			for ; len(v) >= 16; v = v[16:] {
				if isInternal(netip.AddrFrom16([16]byte(v))) {
					return true
				}
			}
		}
	}
	return false
}

// filterMsg is Filter's slow path, for an answer with internal addresses.
func filterMsg(dst, answer []byte) ([]byte, Removal, error) {
	msg := answer
	w, _ := newWalker(answer) // hasInternal parsed the questions
	for {
		if _, ok := w.next(); !ok {
			break
		}
	}
	if w.left > 0 {
		// Keep the records that could be located, in their sections.
		msg = slices.Clone(answer[:w.off])
		an := min(w.found, int(be16(msg[6:])))
		ns := min(w.found-an, int(be16(msg[8:])))
		binary.BigEndian.PutUint16(msg[6:], uint16(an))
		binary.BigEndian.PutUint16(msg[8:], uint16(ns))
		binary.BigEndian.PutUint16(msg[10:], uint16(w.found-an-ns))
	}
	m := new(dns.Msg)
	if err := m.Unpack(msg); err != nil {
		return dst, Removal{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	var rm Removal
	if len(m.Question) > 0 {
		rm.Name = m.Question[0].Name
	}
	m.Answer = strip(m.Answer, &rm)
	m.Ns = strip(m.Ns, &rm)
	m.Extra = strip(m.Extra, &rm)
	if len(rm.Addrs) == 0 {
		// The scan and miekg/dns disagree; what miekg/dns reads is clean.
		return append(dst, answer...), Removal{}, nil
	}
	m.AuthenticatedData = false
	m.Compress = true
	out, err := m.Pack()
	if err != nil {
		return dst, Removal{}, fmt.Errorf("%w: packing: %w", ErrMalformed, err)
	}
	if len(out) > dns.MaxMsgSize {
		return dst, Removal{}, fmt.Errorf("%w: longer than 65535 bytes once rebuilt", ErrMalformed)
	}
	if err := new(dns.Msg).Unpack(out); err != nil {
		// miekg/dns does not pack back every odd record it unpacks.
		return dst, Removal{}, fmt.Errorf("%w: repacking: %w", ErrMalformed, err)
	}
	return append(dst, out...), rm, nil
}

// rrset identifies an RRset within a section.
type rrset struct {
	name  string // canonical (lower case)
	rtype uint16
}

// strip removes from rrs the records with internal addresses, recording
// them in rm, then the RRSIG records that covered their RRsets.
func strip(rrs []dns.RR, rm *Removal) []dns.RR {
	var changed []rrset
	kept := rrs[:0]
	for _, r := range rrs {
		if a, ok := internalIn(r); ok {
			rm.Addrs = append(rm.Addrs, a)
			changed = append(changed, rrset{dns.CanonicalName(r.Header().Name), r.Header().Rrtype})
			continue
		}
		kept = append(kept, r)
	}
	if len(changed) == 0 {
		return kept
	}
	out := kept[:0]
	for _, r := range kept {
		if sig, ok := r.(*dns.RRSIG); ok && slices.Contains(changed, rrset{dns.CanonicalName(sig.Hdr.Name), sig.TypeCovered}) {
			rm.Signatures++
			continue
		}
		out = append(out, r)
	}
	return out
}

// internalIn returns the internal address r carries, if any.
func internalIn(r dns.RR) (netip.Addr, bool) {
	switch r := r.(type) {
	case *dns.A:
		return internalIP(r.A.To4())
	case *dns.AAAA:
		return internalIP(r.AAAA.To16())
	case *dns.SVCB:
		return internalHint(r.Value)
	case *dns.HTTPS:
		return internalHint(r.Value)
	}
	return netip.Addr{}, false
}

// internalHint returns the first internal address among the ipv4hint and
// ipv6hint values of an SVCB or HTTPS record.
func internalHint(kv []dns.SVCBKeyValue) (netip.Addr, bool) {
	for _, v := range kv {
		var ips []net.IP
		switch v := v.(type) {
		case *dns.SVCBIPv4Hint:
			ips = v.Hint
		case *dns.SVCBIPv6Hint:
			ips = v.Hint
		}
		for _, ip := range ips {
			if a, ok := internalIP(ip); ok {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// internalIP converts ip, 4 or 16 bytes long as miekg/dns reads it from an A
// or AAAA record or a hint, and reports whether it is internal.
func internalIP(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a, ok && isInternal(a)
}
