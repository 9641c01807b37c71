package edns

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/miekg/dns"
)

// PrepareAnswer turns the decrypted upstream answer to the query described
// by q into what the client gets, appended to dst:
//
//   - the answer bytes unchanged when they fit in q.Limit, the client sent
//     an OPT record (or the answer carries none) and there is no cookie to
//     remove or add;
//   - the answer without its OPT record when the client sent none (RFC 6891
//     section 7); an extended RCODE, which needs the OPT, becomes SERVFAIL;
//   - for a client that sent an OPT, the answer's COOKIE options removed
//     (the resolver's server cookie is for nobody) and, if Cookies.Stamp
//     made one, a COOKIE option with the client's cookie and the proxy's
//     server cookie added at the end of the OPT record, or in a new OPT
//     (version 0, DefaultPayloadSize, no flags) if the answer has none;
//   - when larger than q.Limit, the answer cut down with TC set as
//     [dns.Msg.Truncate] does: the header, the question, as many whole
//     records as fit, in order, from the answer, authority and additional
//     sections, and the OPT record if the client sent one.
//
// The answer must have QR set, opcode QUERY, the query's ID and its question
// (name compared without regard to ASCII case); an answer with an error RCODE
// may carry no question. A header-only answer with an error RCODE, as some
// resolvers send for REFUSED, is passed with its counts set to zero (and the
// proxy's OPT record with a cookie if there is one). Otherwise the error
// wraps ErrMismatch, or ErrMalformed for an answer that cannot be parsed
// where it must be; the proxy drops such answers. On error dst is returned
// unchanged.
//
// All this runs on the wire bytes without allocating when dst has room, as
// long as the answer's OPT record, if any, is its last record and its
// options are well framed, or the answer passes unchanged. Other layouts (an
// OPT followed by a TSIG, an OPT outside the additional section, a record
// that overruns the message) and an OPT too large to keep go through
// [dns.Msg]: Unpack, the OPT removed for a client without one (else its
// cookies replaced), Truncate, Pack. Records beyond the question are located
// (to find the OPT records) but not validated when the answer passes
// unchanged.
//
// On the wire, records are kept or cut as they come, with their original
// compression. Upstream answers are normally compressed; one that is not may
// keep fewer records than [dns.Msg.Truncate], which recompresses. Cutting
// relies on RFC 1035 name compression: a pointer refers to a prior name, so
// no kept name reads the header counts or runs into a removed record; an
// answer that breaks this (no conforming encoder produces one) may come out
// unparsable, which the client then rejects. dst may be answer[:0].
func PrepareAnswer(dst, answer []byte, q Query) ([]byte, error) {
	if len(answer) < headerLen {
		return dst, errShort
	}
	if len(answer) > MaxTCPSize {
		return dst, errTooLong
	}
	if be16(answer) != q.ID {
		return dst, errID
	}
	if answer[2]&0x80 == 0 {
		return dst, errNotResponse
	}
	if answer[2]&0x78 != 0 {
		return dst, errRespOpcode
	}
	// ours is the COOKIE option the client gets, if any.
	var ours [cookieOptLen]byte
	stamped := q.HadOPT && q.cookie == cookieStamped
	if stamped {
		ours = cookieOption(&q.cookieBytes)
	}
	rcode := answer[3] & 0x0F
	qEnd := headerLen
	switch be16(answer[4:]) {
	case 1:
		if len(answer) == headerLen && rcode != dns.RcodeSuccess {
			start := len(dst)
			dst = append(dst, answer...)
			clear(dst[start+4 : start+headerLen])
			if stamped {
				dst[start+11] = 1
				dst = appendNewOPT(dst, DefaultPayloadSize, 0, ours[:])
			}
			return dst, nil
		}
		aq, end, err := scanQuestion(answer, headerLen)
		if err != nil {
			return dst, err
		}
		if aq != q.q {
			return dst, errQuestion
		}
		qEnd = end
	case 0:
		if rcode == dns.RcodeSuccess {
			return dst, errNoQuestion
		}
	default:
		return dst, errQDCount
	}
	limit := min(max(q.Limit, MinUDPSize), MaxTCPSize)

	// Find the answer's OPT record; only a last one is handled here, but
	// an answer that needs no change passes whatever its layout.
	an, ns, ar := int(be16(answer[6:])), int(be16(answer[8:])), int(be16(answer[10:]))
	n := an + ns + ar
	var opt rr
	hasOPT, odd := false, false // a last OPT record, another one
	theirs := 0                 // bytes of COOKIE options in OPT records
	end := qEnd                 // end of the last record
	for i := range n {
		r, err := scanRR(answer, end)
		if err != nil {
			// Let miekg/dns judge (it tolerates counts that overstate).
			return prepareAnswerMsg(dst, answer, q, limit)
		}
		if r.rrtype == dns.TypeOPT {
			if i == n-1 && i >= an+ns {
				opt, hasOPT = r, true
			} else {
				odd = true
			}
			if q.HadOPT {
				c, ok := cookieBytes(answer, r)
				if !ok {
					return prepareAnswerMsg(dst, answer, q, limit)
				}
				theirs += c
			}
		}
		end = r.end
	}
	if theirs == 0 && !stamped && (q.HadOPT || !hasOPT && !odd) && len(answer) <= limit {
		return append(dst, answer...), nil
	}
	if odd {
		return prepareAnswerMsg(dst, answer, q, limit)
	}
	records := n // records other than the OPT, all before it
	optLen := 0  // bytes of OPT record the client gets
	body := end  // end of the records other than the OPT
	switch {
	case hasOPT:
		records--
		body = opt.start
		if q.HadOPT {
			optLen = opt.end - opt.start - theirs
			if stamped {
				optLen += cookieOptLen
			}
			if qEnd+optLen > limit {
				// Its options must go: Truncate does that.
				return prepareAnswerMsg(dst, answer, q, limit)
			}
		}
	case stamped:
		optLen = newOPTLen + cookieOptLen
	}
	cut, kept := body, records
	if body+optLen > limit {
		cut, kept = qEnd, 0
		for kept < records {
			r, _ := scanRR(answer, cut) // walked above
			if r.end+optLen > limit {
				break
			}
			cut, kept = r.end, kept+1
		}
	}
	// Read before writing: dst may be answer[:0].
	lostRcode := hasOPT && !q.HadOPT && answer[opt.hdr+4] != 0
	start := len(dst)
	dst = append(dst, answer[:cut]...)
	keptAN := min(kept, an)
	keptNS := min(kept-keptAN, ns)
	keptAR := kept - keptAN - keptNS
	var add []byte
	if stamped {
		add = ours[:]
	}
	switch {
	case hasOPT && q.HadOPT:
		// After the kept records: appendOPT reads before it writes.
		dst = appendOPT(dst, answer, opt, add)
		keptAR++
	case stamped:
		dst = appendNewOPT(dst, DefaultPayloadSize, 0, add)
		keptAR++
	}
	h := dst[start:] // after the last append, which may move dst
	binary.BigEndian.PutUint16(h[6:], uint16(keptAN))
	binary.BigEndian.PutUint16(h[8:], uint16(keptNS))
	binary.BigEndian.PutUint16(h[10:], uint16(keptAR))
	if kept < records {
		h[2] |= 0x02 // TC
	}
	if lostRcode {
		// The extended RCODE goes with the OPT.
		h[3] = h[3]&0xF0 | dns.RcodeServerFailure
	}
	return dst, nil
}

// prepareAnswerMsg is PrepareAnswer through *dns.Msg, for an answer whose
// header and question have been checked.
func prepareAnswerMsg(dst, answer []byte, q Query, limit int) ([]byte, error) {
	m := new(dns.Msg)
	if err := m.Unpack(answer); err != nil {
		return dst, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !q.HadOPT {
		removeOPT(m)
	} else {
		removeCookies(m)
		if q.cookie == cookieStamped {
			opt := m.IsEdns0()
			if opt == nil {
				opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
				opt.SetUDPSize(DefaultPayloadSize)
				m.Extra = append(m.Extra, opt)
			}
			opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{
				Code:   dns.EDNS0COOKIE,
				Cookie: hex.EncodeToString(q.cookieBytes[:]),
			})
		}
	}
	Truncate(m, limit)
	out, err := m.Pack()
	if err != nil {
		return dst, fmt.Errorf("%w: packing: %w", ErrMalformed, err)
	}
	if len(out) > limit {
		return dst, errCannotFit
	}
	return append(dst, out...), nil
}
