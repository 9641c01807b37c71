package edns

import (
	"encoding/binary"
	"fmt"

	"github.com/miekg/dns"
)

// PrepareAnswer turns the decrypted upstream answer to the query described
// by q into what the client gets, appended to dst:
//
//   - the answer bytes unchanged when they fit in q.Limit and the client sent
//     an OPT record (or the answer carries none);
//   - the answer without its OPT record when the client sent none (RFC 6891
//     section 7); an extended RCODE, which needs the OPT, becomes SERVFAIL;
//   - the answer cut to q.Limit with TC set (see Truncate) when it is larger;
//     the question is kept, and so is the OPT record if the client sent one.
//
// The answer must have QR set, opcode QUERY, the query's ID and its question
// (name compared without regard to ASCII case); an answer with an error RCODE
// may carry no question. A header-only answer with an error RCODE, as some
// resolvers send for REFUSED, is passed with its counts set to zero.
// Otherwise the error wraps ErrMismatch, or ErrMalformed for an answer that
// cannot be parsed where it must be; the proxy drops such answers. On error
// dst is returned unchanged.
//
// The common cases (the answer fits; the OPT to strip is the last record) run
// on the wire bytes without allocating when dst has room; truncation and
// unusual layouts go through [dns.Msg]. Records beyond the question are not
// validated when the answer passes unchanged. Stripping the last record on
// the wire relies on RFC 1035 name compression: a pointer refers to a prior
// name, so no name runs into the removed record nor reads the header
// counts; an answer that breaks this (no conforming encoder produces one)
// may come out unparsable, which the client then rejects. dst may be
// answer[:0].
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
	rcode := answer[3] & 0x0F
	off := headerLen
	switch be16(answer[4:]) {
	case 1:
		if len(answer) == headerLen && rcode != dns.RcodeSuccess {
			start := len(dst)
			dst = append(dst, answer...)
			clear(dst[start+4 : start+headerLen])
			return dst, nil
		}
		aq, end, err := scanQuestion(answer, headerLen)
		if err != nil {
			return dst, err
		}
		if aq != q.q {
			return dst, errQuestion
		}
		off = end
	case 0:
		if rcode == dns.RcodeSuccess {
			return dst, errNoQuestion
		}
	default:
		return dst, errQDCount
	}
	limit := min(max(q.Limit, MinUDPSize), MaxTCPSize)
	if q.HadOPT {
		if len(answer) <= limit {
			return append(dst, answer...), nil
		}
		return prepareAnswerMsg(dst, answer, true, limit)
	}

	// The client sent no OPT: find the answer's.
	an, ns, ar := int(be16(answer[6:])), int(be16(answer[8:])), int(be16(answer[10:]))
	n := an + ns + ar
	optIdx := -1
	var opt rr
	for i := range n {
		r, err := scanRR(answer, off)
		if err != nil {
			// Let miekg/dns judge (it tolerates counts that overstate).
			return prepareAnswerMsg(dst, answer, false, limit)
		}
		if r.rrtype == dns.TypeOPT {
			if i < an+ns || optIdx >= 0 {
				return prepareAnswerMsg(dst, answer, false, limit)
			}
			optIdx, opt = i, r
		}
		off = r.end
	}
	switch {
	case optIdx < 0:
		if len(answer) <= limit {
			return append(dst, answer...), nil
		}
	case optIdx == n-1 && opt.start <= limit:
		// The OPT is the last record, so no compression pointer refers to
		// it or past it: cutting it off leaves the rest valid.
		start := len(dst)
		dst = append(dst, answer[:opt.start]...)
		binary.BigEndian.PutUint16(dst[start+10:], uint16(ar-1))
		if answer[opt.hdr+4] != 0 { // extended RCODE
			dst[start+3] = dst[start+3]&0xF0 | dns.RcodeServerFailure
		}
		return dst, nil
	}
	return prepareAnswerMsg(dst, answer, false, limit)
}

// prepareAnswerMsg is PrepareAnswer through *dns.Msg, for an answer whose
// header and question have been checked.
func prepareAnswerMsg(dst, answer []byte, hadOPT bool, limit int) ([]byte, error) {
	m := new(dns.Msg)
	if err := m.Unpack(answer); err != nil {
		return dst, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !hadOPT {
		removeOPT(m)
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
