package names

import "encoding/binary"

// Local answers the client query if its name is one that must never leave
// the machine, appending the answer to dst. ok is false, and dst returned
// unchanged, when the query goes upstream: its name is not in a local zone or
// is equal to or under a forwarded suffix, or the query is not a valid
// standard query (the caller's own checks then reject it). why is the
// reason, for a debug log: "Tor onion service (RFC 7686 section 2)".
//
// query must be the client's query as received, before edns.PrepareQuery,
// whose OPT record is not the client's: the answer carries an OPT record iff
// the query did, advertising ednsSize (at least 512) with the query's DO bit.
// Local checks what edns.PrepareQuery checks but the framing of EDNS options
// and the miekg/dns parse of rare layouts, so it answers every query for a
// local name that PrepareQuery accepts (FuzzLocal checks this): QR clear,
// opcode QUERY, one question with an uncompressed name of at most 255 bytes,
// no answer or authority records, at most one OPT record, owned by the root,
// and nothing after the last record.
//
// The answers are those of unbound's default local zones (local-zone: NAME
// static), with the SOA "localhost. nobody.invalid. 1 3600 1200 604800
// 10800" and a TTL of 10800 seconds:
//
//   - a name under a zone apex: NXDOMAIN with the zone's SOA in the
//     authority section (RFC 2308), so that caches keep the answer;
//   - the apex: its SOA and NS (localhost.) records when asked for them,
//     otherwise NODATA (NOERROR, no answer) with the SOA;
//   - localhost and every name under it: A 127.0.0.1 and AAAA ::1, NODATA
//     for other types (RFC 6761 section 6.3);
//   - 1.0.0.127.in-addr.arpa and the ip6.arpa name of ::1: PTR localhost.;
//   - ANY: NODATA with the SOA even where records exist (as unbound, and
//     as RFC 8482 allows);
//   - a class other than IN: REFUSED (unbound gives REFUSED for CHAOS and
//     SERVFAIL for class ANY); a zone transfer (AXFR, IXFR): REFUSED without
//     RA, as unbound;
//   - an OPT record with a version other than 0: BADVERS (RFC 6891).
//
// The answer copies the query's ID, RD and CD bits and its question byte for
// byte (so its letter case), and sets QR, RA (but for a zone transfer), and
// AA but for REFUSED and BADVERS. Owner names are compression pointers into
// the question. An answer holds at most one record and the OPT: at most 341
// bytes, within any client's limit. TestAgainstUnbound compares the answers
// with unbound's, field by field.
//
// Local does not allocate when dst has room. dst must not overlap query.
func (p *Policy) Local(dst, query []byte, ednsSize uint16) (out []byte, why string, ok bool) {
	var q localQuery
	if !q.parse(query) {
		return dst, "", false
	}
	z := lookupZone(&q.name)
	if z == nil || p.forwarded(&q.name) {
		return dst, "", false
	}
	return z.answer(dst, query, &q, ednsSize), z.why, true
}

// localQuery is what Local reads from a client query.
type localQuery struct {
	name    wireName
	qEnd    int // end of the question
	qtype   uint16
	qclass  uint16
	hasOPT  bool
	version uint8 // EDNS version, if hasOPT
	do      bool  // DNSSEC OK, if hasOPT
}

// parse validates msg as Local's doc comment says and fills q.
func (q *localQuery) parse(msg []byte) bool {
	if len(msg) < headerLen || len(msg) > 65535 ||
		msg[2]&0xF8 != 0 || // QR set, or opcode not QUERY
		be16(msg[4:]) != 1 || be16(msg[6:]) != 0 || be16(msg[8:]) != 0 {
		return false
	}
	end, ok := q.name.parse(msg, headerLen)
	if !ok || end+4 > len(msg) {
		return false
	}
	q.qtype, q.qclass = be16(msg[end:]), be16(msg[end+2:])
	q.qEnd = end + 4
	off := q.qEnd
	for range be16(msg[10:]) {
		r, ok := scanRR(msg, off)
		if !ok {
			return false
		}
		if r.rtype == typeOPT {
			if q.hasOPT || r.hdr != off+1 { // a second OPT, or not the root's
				return false
			}
			q.hasOPT = true
			q.version = msg[r.hdr+5]
			q.do = msg[r.hdr+6]&bitDO != 0
		}
		off = r.end
	}
	return off == len(msg)
}

// Response codes and header bits.
const (
	rcodeNXDomain = 3
	rcodeRefused  = 5
	rcodeBadVers  = 16 // extended: 1 in the OPT record, 0 in the header

	bitQR = 0x80 // byte 2
	bitAA = 0x04 // byte 2
	bitRD = 0x01 // byte 2
	bitRA = 0x80 // byte 3
	bitCD = 0x10 // byte 3
	bitDO = 0x80 // third byte of the OPT record's TTL field
)

// Record data of the local answers.
const (
	localTTL = "\x00\x00\x2a\x30" // 10800 seconds, in wire form
	// localhost. in wire form: the NS and PTR targets.
	localhostWire = "\x09localhost\x00"
	// unbound's SOA: localhost. nobody.invalid. 1 3600 1200 604800 10800.
	soaRdata = localhostWire + "\x06nobody\x07invalid\x00" +
		"\x00\x00\x00\x01" + // serial 1
		"\x00\x00\x0e\x10" + // refresh 3600
		"\x00\x00\x04\xb0" + // retry 1200
		"\x00\x09\x3a\x80" + // expire 604800
		"\x00\x00\x2a\x30" // minimum 10800: the negative TTL (RFC 2308)
	loopback4 = "\x7f\x00\x00\x01"
	loopback6 = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
)

// answer appends z's answer to the query msg, parsed into q.
func (z *zone) answer(dst, msg []byte, q *localQuery, ednsSize uint16) []byte {
	start := len(dst)
	dst = append(dst, msg[:q.qEnd]...)
	rcode, aa, ra := 0, true, true
	an, ns := 0, 0
	switch {
	case q.hasOPT && q.version != 0:
		rcode, aa = rcodeBadVers, false
	case q.qtype == typeAXFR || q.qtype == typeIXFR:
		rcode, aa, ra = rcodeRefused, false, false // as unbound
	case q.qclass != classIN:
		rcode, aa = rcodeRefused, false
	default:
		const qname = headerLen // owner of the answer records: the question
		atApex := q.name.n == len(z.wire)
		atPTR := z.ptr != "" && string(q.name.b[:q.name.n]) == z.ptr
		switch {
		case !atApex && !atPTR && !z.loopback:
			rcode = rcodeNXDomain
		case atApex && q.qtype == typeNS:
			dst, an = appendRR(dst, qname, typeNS, localhostWire), 1
		case atApex && q.qtype == typeSOA:
			dst, an = appendRR(dst, qname, typeSOA, soaRdata), 1
		case z.loopback && q.qtype == typeA:
			dst, an = appendRR(dst, qname, typeA, loopback4), 1
		case z.loopback && q.qtype == typeAAAA:
			dst, an = appendRR(dst, qname, typeAAAA, loopback6), 1
		case atPTR && q.qtype == typePTR:
			dst, an = appendRR(dst, qname, typePTR, localhostWire), 1
		}
		if an == 0 {
			// NXDOMAIN or NODATA: the SOA, owned by the apex, which ends
			// the question name.
			apex := headerLen + q.name.n - len(z.wire)
			dst, ns = appendRR(dst, apex, typeSOA, soaRdata), 1
		}
	}
	ar := 0
	if q.hasOPT {
		dst, ar = appendOPT(dst, ednsSize, rcode, q.do), 1
	}
	h := dst[start : start+headerLen]
	h[2] = bitQR | msg[2]&bitRD
	if aa {
		h[2] |= bitAA
	}
	h[3] = msg[3]&bitCD | byte(rcode&0x0F)
	if ra {
		h[3] |= bitRA
	}
	binary.BigEndian.PutUint16(h[4:], 1)
	binary.BigEndian.PutUint16(h[6:], uint16(an))
	binary.BigEndian.PutUint16(h[8:], uint16(ns))
	binary.BigEndian.PutUint16(h[10:], uint16(ar))
	return dst
}

// appendRR appends a class IN record with localTTL, owned by the name at
// offset owner of the message (a compression pointer, RFC 1035 4.1.4).
func appendRR(dst []byte, owner int, rtype uint16, rdata string) []byte {
	dst = append(dst,
		0xC0|byte(owner>>8), byte(owner),
		byte(rtype>>8), byte(rtype),
		0, classIN)
	dst = append(dst, localTTL...)
	dst = append(dst, byte(len(rdata)>>8), byte(len(rdata)))
	return append(dst, rdata...)
}

// appendOPT appends an OPT record (RFC 6891 section 6.1.2): payload size
// (at least 512), the extended RCODE bits of rcode, version 0, the DO bit,
// no options.
func appendOPT(dst []byte, size uint16, rcode int, do bool) []byte {
	size = max(size, 512)
	var flags byte
	if do {
		flags = bitDO
	}
	return append(dst,
		0, // the root
		0, typeOPT,
		byte(size>>8), byte(size),
		byte(rcode>>4), 0, flags, 0, // extended RCODE, version, DO and Z
		0, 0) // RDLENGTH
}
