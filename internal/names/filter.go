package names

import (
	"encoding/binary"
	"fmt"
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
// and of any class, whose address is internal (private, loopback,
// link-local, unique-local, carrier-grade NAT, unspecified, broadcast, and
// IPv6 forms of those IPv4 addresses: the blocks, and why, are listed in
// internal.go) is removed, as is every SVCB or HTTPS record with such an
// address among its ipv4hint or ipv6hint values (unbound does the same),
// unless the question name is equal to or under a forwarded suffix or in a
// local zone (see Local). Names in the answer do not count: a CNAME from a
// public name into a forwarded suffix does not exempt the public name. Then:
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
// for byte, found by a scan of the wire bytes that does not allocate. The
// scan decides what goes; it reads an A or AAAA address where the RDATA
// starts whatever the RDLENGTH, as lenient parsers such as Go's dnsmessage
// do, so a malformed record cannot smuggle an address past it. Only when a
// record must go is the answer unpacked and packed again with
// [github.com/miekg/dns] (with name compression). Records are read in order
// up to the first one that cannot be located in the message (a truncated or
// malformed tail, which no parser reads past; a record whose RDATA alone
// runs past the end is still read for its address); such a tail is dropped
// if the answer is rebuilt.
//
// err, wrapping ErrMalformed, is returned only when records had to be
// removed from an answer that miekg/dns cannot unpack or pack (an A record
// of 5 bytes, say); the caller should then answer SERVFAIL, failing closed.
// On error dst is returned unchanged. dst may be answer[:0]: the answer is
// then filtered in place. Call Filter before edns.PrepareAnswer, which
// truncates to the client's limit.
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
	off   int  // start of the next record
	left  int  // records counted in the header and not yet located
	found int  // records located
	done  bool // a record ran past the end of msg
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
// first whose owner name, TYPE, CLASS, TTL and RDLENGTH are not all in the
// message. A record whose RDATA runs past the end of the message comes out
// with cut set and end the end of the message, and is the last: parsers
// that read fields lazily (Go's dnsmessage) still find an address there.
// It is not counted in found.
func (w *walker) next() (r rr, cut, ok bool) {
	if w.left == 0 || w.done {
		return rr{}, false, false
	}
	hdr, ok := skipName(w.msg, w.off)
	if !ok || hdr+10 > len(w.msg) {
		w.done = true
		return rr{}, false, false
	}
	r = rr{hdr: hdr, end: hdr + 10 + int(be16(w.msg[hdr+8:])), rtype: be16(w.msg[hdr:])}
	if r.end > len(w.msg) {
		r.end, w.done = len(w.msg), true
		return r, true, true
	}
	w.off, w.left, w.found = r.end, w.left-1, w.found+1
	return r, false, true
}

// hasInternal reports whether a record that can be located in msg carries
// an internal address. It does not allocate.
func hasInternal(msg []byte) bool {
	w, ok := newWalker(msg)
	if !ok {
		return false
	}
	for {
		r, _, ok := w.next()
		if !ok {
			return false
		}
		if _, bad := internalAt(msg, r); bad {
			return true
		}
	}
}

// internalAt returns the internal address record r of msg carries, if any:
// that of an A or AAAA record, or the first internal ipv4hint or ipv6hint
// of an SVCB or HTTPS record.
//
// The address of an A or AAAA record is read where its RDATA starts,
// whatever its RDLENGTH, as lenient parsers do: Go's dnsmessage (and so
// Go's own resolver) reads 4 bytes for an A record of length 0, from the
// bytes that follow it.
func internalAt(msg []byte, r rr) (netip.Addr, bool) {
	rd := r.hdr + 10
	var a netip.Addr
	switch r.rtype {
	case typeA:
		if rd+4 > len(msg) {
			return a, false
		}
		a = netip.AddrFrom4([4]byte(msg[rd:]))
	case typeAAAA:
		if rd+16 > len(msg) {
			return a, false
		}
		a = netip.AddrFrom16([16]byte(msg[rd:]))
	case typeSVCB, typeHTTPS:
		return svcbInternal(r.rdata(msg))
	default:
		return a, false
	}
	return a, isInternal(a)
}

// SvcParamKeys of the address hints (RFC 9460 section 14.3.2).
const (
	keyIPv4Hint = 4
	keyIPv6Hint = 6
)

// svcbInternal returns the first internal address among the ipv4hint and
// ipv6hint values of the SVCB or HTTPS RDATA rd, if any (RFC 9460 section 2.2:
// priority, uncompressed target name, then key, length, value triples). It
// reads what it can of malformed RDATA.
func svcbInternal(rd []byte) (netip.Addr, bool) {
	off, ok := skipName(rd, 2)
	if !ok {
		return netip.Addr{}, false
	}
	for off+4 <= len(rd) {
		key, n := be16(rd[off:]), int(be16(rd[off+2:]))
		v := rd[off+4 : min(off+4+n, len(rd))]
		off += 4 + n
		switch key {
		case keyIPv4Hint:
			for ; len(v) >= 4; v = v[4:] {
				if a := netip.AddrFrom4([4]byte(v)); isInternal(a) {
					return a, true
				}
			}
		case keyIPv6Hint:
			for ; len(v) >= 16; v = v[16:] {
				if a := netip.AddrFrom16([16]byte(v)); isInternal(a) {
					return a, true
				}
			}
		}
	}
	return netip.Addr{}, false
}

// filterMsg is Filter's slow path, for an answer with internal addresses.
// The wire scan decides which records go (internalAt); miekg/dns unpacks
// the records that can be located, which it must read one for one, and
// packs what is left.
func filterMsg(dst, answer []byte) ([]byte, Removal, error) {
	var rm Removal
	var drop []int            // indexes, over all sections, of the records to remove
	w, _ := newWalker(answer) // hasInternal parsed the questions
	for {
		r, cut, ok := w.next()
		if !ok {
			break
		}
		if a, bad := internalAt(answer, r); bad {
			if !cut { // a cut record goes with the tail
				drop = append(drop, w.found-1)
			}
			rm.Addrs = append(rm.Addrs, a)
		}
	}
	an, ns := int(be16(answer[6:])), int(be16(answer[8:]))
	msg := answer
	if w.left > 0 {
		// Keep the records that could be located, in their sections.
		msg = slices.Clone(answer[:w.off])
		an = min(w.found, an)
		ns = min(w.found-an, ns)
		binary.BigEndian.PutUint16(msg[6:], uint16(an))
		binary.BigEndian.PutUint16(msg[8:], uint16(ns))
		binary.BigEndian.PutUint16(msg[10:], uint16(w.found-an-ns))
	}
	m := new(dns.Msg)
	if err := m.Unpack(msg); err != nil {
		return dst, Removal{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(m.Answer) != an || len(m.Ns) != ns || len(m.Answer)+len(m.Ns)+len(m.Extra) != w.found {
		return dst, Removal{}, fmt.Errorf("%w: records not where the header says", ErrMalformed)
	}
	if len(m.Question) > 0 {
		rm.Name = m.Question[0].Name
	}
	m.Answer = strip(m.Answer, drop, 0, &rm)
	m.Ns = strip(m.Ns, drop, an, &rm)
	m.Extra = strip(m.Extra, drop, an+ns, &rm)
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

// strip removes from the section rrs, whose first record has index first
// over all sections, the records whose indexes are in drop (ascending), then the RRSIG
// records that covered their RRsets, which it counts in rm.
func strip(rrs []dns.RR, drop []int, first int, rm *Removal) []dns.RR {
	changed := make(map[rrset]bool)
	kept := rrs[:0]
	for i, r := range rrs {
		if _, found := slices.BinarySearch(drop, first+i); found {
			changed[rrset{dns.CanonicalName(r.Header().Name), r.Header().Rrtype}] = true
			continue
		}
		kept = append(kept, r)
	}
	if len(changed) == 0 {
		return kept
	}
	out := kept[:0]
	for _, r := range kept {
		if sig, ok := r.(*dns.RRSIG); ok && changed[rrset{dns.CanonicalName(sig.Hdr.Name), sig.TypeCovered}] {
			rm.Signatures++
			continue
		}
		out = append(out, r)
	}
	return out
}
