package upstream

import (
	"encoding/binary"
	"errors"
)

// DNS wire layout (RFC 1035 section 4.1), as far as the stream upstreams
// need it: the framing of a message, not the contents of its records.
const (
	dnsHeaderLen = 12
	maxMsgLen    = 65535 // a message over a byte stream (2-byte length)
	typeOPT      = 41
)

var (
	errWireShort    = errors.New("message overruns its end")
	errWireLabel    = errors.New("reserved label type")
	errWirePointer  = errors.New("compression pointer not to an earlier name")
	errWireName     = errors.New("name longer than 255 bytes")
	errWireTrailing = errors.New("bytes after the last record")
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// layout is the framing of a DNS message, found by walkMessage.
type layout struct {
	qEnd     int    // end of the question section
	last     int    // offset of the last record, -1 if none
	lastType uint16 // its TYPE
	records  int    // answer, authority and additional records
}

// walkMessage checks the framing of the DNS message b: a header, then as
// many questions and records as its counts say, each within b, with names
// made of labels and compression pointers to earlier offsets past the
// header, and no byte after the last record. It does not look into the
// records' data.
func walkMessage(b []byte) (layout, error) {
	if len(b) < dnsHeaderLen {
		return layout{}, errWireShort
	}
	l := layout{last: -1}
	off := dnsHeaderLen
	var err error
	for range be16(b[4:]) {
		if off, err = skipName(b, off); err != nil {
			return l, err
		}
		if off += 4; off > len(b) {
			return l, errWireShort
		}
	}
	l.qEnd = off
	l.records = int(be16(b[6:])) + int(be16(b[8:])) + int(be16(b[10:]))
	for range l.records {
		start := off
		if off, err = skipName(b, off); err != nil {
			return l, err
		}
		if off+10 > len(b) {
			return l, errWireShort
		}
		l.last, l.lastType = start, be16(b[off:])
		if off += 10 + int(be16(b[off+8:])); off > len(b) {
			return l, errWireShort
		}
	}
	if off != len(b) {
		return l, errWireTrailing
	}
	return l, nil
}

// skipName returns the offset after the name at off: labels, ended by the
// root label or by a compression pointer, which must point to an earlier
// offset past the header (it is not followed).
func skipName(b []byte, off int) (int, error) {
	n := 0
	for {
		if off >= len(b) {
			return 0, errWireShort
		}
		c := int(b[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, nil
			}
			if n += c + 1; n > 254 {
				return 0, errWireName
			}
			off += c + 1
		case 0xC0:
			if off+2 > len(b) {
				return 0, errWireShort
			}
			if p := int(be16(b[off:]) & 0x3FFF); p < dnsHeaderLen || p >= off {
				return 0, errWirePointer
			}
			return off + 2, nil
		default:
			return 0, errWireLabel
		}
	}
}

// equalFoldName reports whether two uncompressed wire names are equal
// without regard to ASCII case. Label lengths (at most 63) are never
// letters, so the names compare byte by byte.
func equalFoldName(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
