package edns

import (
	"encoding/binary"
	"fmt"

	"github.com/miekg/dns"
)

// Wire layout constants (RFC 1035 section 4.1).
const (
	headerLen = 12
	maxName   = 255 // longest name in wire form, root label included
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Preformatted errors, so that rejecting a packet does not allocate.
var (
	errShort        = fmt.Errorf("%w: short message", ErrMalformed)
	errTooLong      = fmt.Errorf("%w: longer than 65535 bytes", ErrMalformed)
	errQR           = fmt.Errorf("%w: QR set", ErrNotQuery)
	errOpcode       = fmt.Errorf("%w: opcode not QUERY", ErrNotQuery)
	errQDCount      = fmt.Errorf("%w: question count not 1", ErrMalformed)
	errANNSCount    = fmt.Errorf("%w: query with answer or authority records", ErrMalformed)
	errLabel        = fmt.Errorf("%w: compressed or reserved label in question", ErrMalformed)
	errLongName     = fmt.Errorf("%w: name longer than 255 bytes", ErrMalformed)
	errBadName      = fmt.Errorf("%w: bad label type", ErrMalformed)
	errRecord       = fmt.Errorf("%w: record overruns message", ErrMalformed)
	errTwoOPT       = fmt.Errorf("%w: more than one OPT record", ErrMalformed)
	errOPTName      = fmt.Errorf("%w: OPT owner not the root", ErrMalformed)
	errOPTOption    = fmt.Errorf("%w: OPT option overruns record", ErrMalformed)
	errCookieLen    = fmt.Errorf("%w: COOKIE option length not 8 nor 16 to 40", ErrMalformed)
	errTrailing     = fmt.Errorf("%w: trailing bytes", ErrMalformed)
	errID           = fmt.Errorf("%w: ID", ErrMismatch)
	errNotResponse  = fmt.Errorf("%w: QR clear", ErrMismatch)
	errRespOpcode   = fmt.Errorf("%w: opcode", ErrMismatch)
	errQuestion     = fmt.Errorf("%w: question", ErrMismatch)
	errNoQuestion   = fmt.Errorf("%w: no question in a NOERROR answer", ErrMismatch)
	errCannotFit    = fmt.Errorf("%w: cannot truncate to the client limit", ErrMalformed)
	errOutputTooBig = fmt.Errorf("%w: rewritten query longer than 65535 bytes", ErrMalformed)
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// question identifies a question without keeping its bytes: the wire length
// of the name, a 64-bit FNV-1a hash of the name with ASCII letters folded to
// lower case, and the type and class.
type question struct {
	hash   uint64
	nameLn uint16
	qtype  uint16
	qclass uint16
}

// scanQuestion reads the question at off, whose name must be uncompressed
// (a pointer in the first question could only point into the header).
// It returns the offset just after the question.
func scanQuestion(b []byte, off int) (question, int, error) {
	h := uint64(fnvOffset)
	start := off
	for {
		if off >= len(b) {
			return question{}, 0, errShort
		}
		c := int(b[off])
		if c == 0 {
			off++
			break
		}
		if c > 63 {
			return question{}, 0, errLabel
		}
		if off+1+c > len(b) {
			return question{}, 0, errShort
		}
		// Same budget as miekg/dns: labels plus root at most 255 bytes.
		if off+1+c-start > maxName-1 {
			return question{}, 0, errLongName
		}
		h = (h ^ uint64(c)) * fnvPrime
		for _, x := range b[off+1 : off+1+c] {
			if 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			h = (h ^ uint64(x)) * fnvPrime
		}
		off += 1 + c
	}
	if off+4 > len(b) {
		return question{}, 0, errShort
	}
	q := question{
		hash:   h,
		nameLn: uint16(off - start),
		qtype:  be16(b[off:]),
		qclass: be16(b[off+2:]),
	}
	return q, off + 4, nil
}

// skipName returns the offset after the possibly compressed name at off. It
// does not follow pointers.
func skipName(b []byte, off int) (int, error) {
	for {
		if off >= len(b) {
			return 0, errShort
		}
		c := int(b[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, nil
			}
			off += 1 + c
		case 0xC0:
			if off+2 > len(b) {
				return 0, errShort
			}
			return off + 2, nil
		default:
			return 0, errBadName
		}
	}
}

// rr locates one resource record.
type rr struct {
	start  int    // first byte of the owner name
	hdr    int    // first byte after the owner name: type, class, TTL, RDLENGTH
	end    int    // first byte after the RDATA
	rrtype uint16 // TYPE
}

// scanRR locates the record at off.
func scanRR(b []byte, off int) (rr, error) {
	hdr, err := skipName(b, off)
	if err != nil {
		return rr{}, err
	}
	if hdr+10 > len(b) {
		return rr{}, errRecord
	}
	end := hdr + 10 + int(be16(b[hdr+8:]))
	if end > len(b) {
		return rr{}, errRecord
	}
	return rr{start: off, hdr: hdr, end: end, rrtype: be16(b[hdr:])}, nil
}

// newOPTLen is the length of an OPT record without options.
const newOPTLen = 11

// appendNewOPT appends to dst an OPT record owned by the root with the
// given payload size, TTL (extended RCODE, version, DO and Z) and option
// bytes.
func appendNewOPT(dst []byte, size uint16, ttl uint32, options []byte) []byte {
	dst = append(dst,
		0,                    // owner: root
		0, byte(dns.TypeOPT), // TYPE
		byte(size>>8), byte(size), // CLASS: payload size
		byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl),
		byte(len(options)>>8), byte(len(options)), // RDLENGTH
	)
	return append(dst, options...)
}

// appendOPT appends to dst the OPT record opt of msg with its COOKIE
// options left out, the option bytes add put at the end, and its RDLENGTH
// set to match. The options must be well framed. dst may share msg's
// memory if it ends at or before opt.start: every byte of msg is read
// before it is overwritten.
func appendOPT(dst, msg []byte, opt rr, add []byte) []byte {
	dst = append(dst, msg[opt.start:opt.hdr+8]...)
	rdlen := len(dst)
	dst = append(dst, 0, 0)
	for p := opt.hdr + 10; p < opt.end; {
		next := p + 4 + int(be16(msg[p+2:]))
		if be16(msg[p:]) != dns.EDNS0COOKIE {
			dst = append(dst, msg[p:next]...)
		}
		p = next
	}
	dst = append(dst, add...)
	binary.BigEndian.PutUint16(dst[rdlen:], uint16(len(dst)-rdlen-2))
	return dst
}

// cookieBytes returns the number of bytes that the COOKIE options of the
// OPT record opt take in msg, and false if its options are not well framed.
func cookieBytes(msg []byte, opt rr) (int, bool) {
	n := 0
	for p := opt.hdr + 10; p < opt.end; {
		if p+4 > opt.end {
			return 0, false
		}
		next := p + 4 + int(be16(msg[p+2:]))
		if next > opt.end {
			return 0, false
		}
		if be16(msg[p:]) == dns.EDNS0COOKIE {
			n += next - p
		}
		p = next
	}
	return n, true
}

// cookieOption returns the COOKIE option holding the client and server
// cookies c.
func cookieOption(c *[clientCookieLen + serverCookieLen]byte) [cookieOptLen]byte {
	var o [cookieOptLen]byte
	binary.BigEndian.PutUint16(o[0:], dns.EDNS0COOKIE)
	binary.BigEndian.PutUint16(o[2:], uint16(len(c)))
	copy(o[4:], c[:])
	return o
}
