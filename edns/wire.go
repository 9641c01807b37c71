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

// checkOptions checks the option framing of the OPT record r and reports
// whether every option is one that miekg/dns keeps as opaque bytes, so that
// unpacking and packing it gives the same bytes back, and whether one is an
// EDNS Client Subnet option.
func checkOptions(b []byte, r rr) (opaque, ecs bool, err error) {
	opaque = true
	for p := r.hdr + 10; p < r.end; {
		if p+4 > r.end {
			return false, false, errOPTOption
		}
		switch be16(b[p:]) {
		case dns.EDNS0SUBNET:
			ecs = true
			opaque = false
		case dns.EDNS0LLQ, dns.EDNS0UL, dns.EDNS0EXPIRE,
			dns.EDNS0TCPKEEPALIVE, dns.EDNS0EDE, dns.EDNS0ESU,
			dns.EDNS0REPORTING, dns.EDNS0ZONEVERSION:
			// Options with structure that miekg/dns parses (and may
			// reject or normalise).
			opaque = false
		}
		p += 4 + int(be16(b[p+2:]))
		if p > r.end {
			return false, false, errOPTOption
		}
	}
	return opaque, ecs, nil
}
