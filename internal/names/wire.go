package names

import "encoding/binary"

// Wire layout (RFC 1035 section 4.1).
const (
	headerLen = 12
	maxName   = 255 // longest name in wire form, root label included
	maxLabels = 127 // most labels in such a name, root excluded

	typeA     = 1
	typeNS    = 2
	typeSOA   = 6
	typePTR   = 12
	typeAAAA  = 28
	typeOPT   = 41
	typeSVCB  = 64
	typeHTTPS = 65
	typeIXFR  = 251
	typeAXFR  = 252
	classIN   = 1
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// wireName is a lower-cased copy of an uncompressed name in wire form with
// the offset of each label, so that its suffixes can be looked up in maps
// without allocating. It lives on the caller's stack.
type wireName struct {
	b      [maxName]byte
	n      int // bytes used in b, root label included
	labels int // labels, root excluded
	off    [maxLabels]uint8
}

// parse reads the uncompressed name at msg[off:] into n and returns the
// offset just after it. ok is false for a compressed or reserved label, a
// name longer than 255 bytes or one that overruns msg.
func (n *wireName) parse(msg []byte, off int) (end int, ok bool) {
	n.n, n.labels = 0, 0
	for {
		if off >= len(msg) {
			return 0, false
		}
		c := int(msg[off])
		if c == 0 {
			if n.n >= maxName {
				return 0, false
			}
			n.b[n.n] = 0
			n.n++
			return off + 1, true
		}
		if c > 63 || off+1+c > len(msg) || n.n+1+c >= maxName {
			return 0, false
		}
		n.off[n.labels] = uint8(n.n)
		n.labels++
		n.b[n.n] = byte(c)
		for i, x := range msg[off+1 : off+1+c] {
			if 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			n.b[n.n+1+i] = x
		}
		n.n += 1 + c
		off += 1 + c
	}
}

// suffix returns the last d labels of n and the root label, in wire form;
// 0 < d <= n.labels.
func (n *wireName) suffix(d int) []byte {
	return n.b[n.off[n.labels-d]:n.n]
}

// skipName returns the offset after the possibly compressed name at off,
// without following pointers, or ok false if it is malformed or overruns msg.
func skipName(msg []byte, off int) (end int, ok bool) {
	for {
		if off >= len(msg) {
			return 0, false
		}
		c := int(msg[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, true
			}
			off += 1 + c
		case 0xC0:
			if off+2 > len(msg) {
				return 0, false
			}
			return off + 2, true
		default:
			return 0, false
		}
	}
}

// rr locates one resource record.
type rr struct {
	hdr   int // first byte after the owner name: TYPE, CLASS, TTL, RDLENGTH
	end   int // first byte after the RDATA
	rtype uint16
}

// rdata returns the RDATA of r.
func (r rr) rdata(msg []byte) []byte { return msg[r.hdr+10 : r.end] }

// scanRR locates the record at off; ok is false if it overruns msg.
func scanRR(msg []byte, off int) (rr, bool) {
	hdr, ok := skipName(msg, off)
	if !ok || hdr+10 > len(msg) {
		return rr{}, false
	}
	end := hdr + 10 + int(be16(msg[hdr+8:]))
	if end > len(msg) {
		return rr{}, false
	}
	return rr{hdr: hdr, end: end, rtype: be16(msg[hdr:])}, true
}
