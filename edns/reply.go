package edns

import (
	"errors"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// ErrorReply builds the proxy's own answer to a client message that
// PrepareQuery (or TCReplyBytes) refused, appends it to dst and returns
// true; or returns dst unchanged and false when the message gets no answer
// at all: when it is shorter than a header, or a response (QR set), so that
// the proxy never answers an answer (reflection and loops). The answer, by
// what is wrong with the message, in this order:
//
//   - an opcode other than QUERY: NOTIMP, as unbound and BIND answer;
//   - a query whose OPT record has an EDNS version other than 0: BADVERS
//     (extended RCODE 16: 1 in the OPT record, 0 in the header; RFC 6891
//     section 6.1.3), with an OPT record of version 0;
//   - a valid cookie-only query (ErrCookieOnly) when c is not nil: NOERROR,
//     with the client cookie of its first COOKIE option and a server cookie
//     made by c for the client at address client at time now (RFC 7873
//     section 5.4, as BIND answers);
//   - anything else, including a cookie-only query when c is nil and a
//     query that PrepareQuery refused only because it could not rewrite
//     it: FORMERR (RFC 1035 section 4.1.1).
//
// Like the error answers of unbound and BIND, the answer has the message's
// ID, opcode, RD and CD bits, QR and RA set (the proxy offers recursion; dig
// warns without RA), and the other flags clear. Its question is the
// message's if it has exactly one that parses (an uncompressed name of at
// most 255 bytes, a type and a class), else there is none (QDCOUNT 0). Its
// answer and authority sections are empty. Its additional section holds an
// OPT record if and only if the message has a usable one (RFC 6891 section
// 6.1.1): exactly one OPT record among the additional records that can be
// read, owned by the root, whatever its version or options. That OPT record
// is owned by the root, has version 0, payload size DefaultPayloadSize, the
// message's DO bit, the extended RCODE and no option but the cookie of a
// cookie-only query. An answer is thus at most 12 + 259 + 11 + 28 = 310
// bytes long: every client accepts it over UDP.
func ErrorReply(dst, pkt []byte, c *Cookies, client netip.Addr, now time.Time) ([]byte, bool) {
	if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
		return dst, false
	}
	// The wire checks alone: a query they pass gets FORMERR all the same.
	s, err := scanQuery(pkt)
	rcode, ext := byte(dns.RcodeFormatError), byte(0)
	cookie := false
	switch {
	case pkt[2]&0x78 != 0:
		rcode = dns.RcodeNotImplemented
	case errors.Is(err, ErrBadVersion):
		rcode, ext = dns.RcodeBadVers&0xF, dns.RcodeBadVers>>4
	case errors.Is(err, ErrCookieOnly) && c != nil:
		rcode, cookie = dns.RcodeSuccess, true
	}
	p := salvage(pkt)
	start := len(dst)
	dst = append(dst,
		pkt[0], pkt[1], // ID
		0x80|pkt[2]&0x79,       // QR, opcode, RD
		0x80|pkt[3]&0x10|rcode, // RA, CD, RCODE
		0, 0, 0, 0, 0, 0, 0, 0, // counts
	)
	if p.qEnd > 0 {
		dst[start+5] = 1
		dst = append(dst, pkt[headerLen:p.qEnd]...)
	}
	if p.opt {
		dst[start+11] = 1
		ttl := uint32(ext)<<24 | uint32(p.flags&0x8000) // DO
		var options []byte
		if cookie {
			var cb [clientCookieLen + serverCookieLen]byte
			copy(cb[:], s.client[:])
			c.serverCookie((*[serverCookieLen]byte)(cb[clientCookieLen:]), &s.client, client, uint32(now.Unix()))
			o := cookieOption(&cb)
			options = o[:]
		}
		dst = appendNewOPT(dst, DefaultPayloadSize, ttl, options)
	}
	return dst, true
}

// RcodeReply appends to dst an empty answer with the given RCODE (0 to 15)
// to query, a query that PrepareQuery accepted (the proxy's SERVFAIL when
// the upstream fails): its ID, opcode, RD and CD bits and its question, QR
// and RA set, and an OPT record (payload size DefaultPayloadSize, the
// query's DO bit) if the query has one. Give the result to PrepareAnswer
// with the query's Query, which fits it to the client (its own OPT or
// none, the cookie). It does not allocate when dst has room.
func RcodeReply(dst, query []byte, rcode int) []byte {
	if len(query) < headerLen {
		return dst
	}
	p := salvage(query)
	start := len(dst)
	dst = append(dst,
		query[0], query[1],
		0x80|query[2]&0x79,
		0x80|query[3]&0x10|byte(rcode&0xF),
		0, 0, 0, 0, 0, 0, 0, 0,
	)
	if p.qEnd > 0 {
		dst[start+5] = 1
		dst = append(dst, query[headerLen:p.qEnd]...)
	}
	if p.opt {
		dst[start+11] = 1
		dst = appendNewOPT(dst, DefaultPayloadSize, uint32(p.flags&0x8000), nil)
	}
	return dst
}

// salvaged is what an error answer echoes of a message.
type salvaged struct {
	qEnd  int    // end of the question to echo, or 0 for none
	opt   bool   // the message has a usable OPT record
	flags uint16 // the DO bit and Z flags of that OPT record
}

// salvage finds what ErrorReply echoes of pkt, a message of at least a
// header: the question, if QDCOUNT is 1 and it parses as PrepareQuery
// requires, and whether it has a usable OPT record (see ErrorReply). It
// walks the questions and records as far as they can be read.
func salvage(pkt []byte) salvaged {
	var p salvaged
	qd := int(be16(pkt[4:]))
	off := headerLen
	if qd == 1 {
		if _, end, err := scanQuestion(pkt, headerLen); err == nil {
			p.qEnd, off, qd = end, end, 0
		}
	}
	for range qd {
		end, err := skipName(pkt, off)
		if err != nil || end+4 > len(pkt) {
			return p
		}
		off = end + 4
	}
	an, ns, ar := int(be16(pkt[6:])), int(be16(pkt[8:])), int(be16(pkt[10:]))
	opts := 0
	for i := range an + ns + ar {
		r, err := scanRR(pkt, off)
		if err != nil {
			break
		}
		if r.rrtype == dns.TypeOPT && i >= an+ns {
			opts++
			p.opt = r.hdr == r.start+1
			p.flags = be16(pkt[r.hdr+6:])
		}
		off = r.end
	}
	p.opt = p.opt && opts == 1
	return p
}
