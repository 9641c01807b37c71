package edns

import (
	"encoding/binary"
	"time"

	"github.com/miekg/dns"
)

// Options of queries over a byte stream (TCP, TLS): edns-tcp-keepalive
// ([RFC 7828]) and Padding ([RFC 7830]).
//
// [RFC 7828]: https://www.rfc-editor.org/rfc/rfc7828
// [RFC 7830]: https://www.rfc-editor.org/rfc/rfc7830
const (
	// QueryPadBlock is the block size queries are padded to (RFC 8467
	// section 4.1, "Block-Length Padding": 128 bytes for queries).
	QueryPadBlock = 128
	// optHeaderLen is the length of an option's code and length fields.
	optHeaderLen = 4
)

// StreamQuery says what AppendStreamQuery puts into a query's OPT record.
type StreamQuery struct {
	// Keepalive adds an edns-tcp-keepalive option without a TIMEOUT (a
	// client sends it empty, RFC 7828 section 3.2.1).
	Keepalive bool
	// Block pads the message with a Padding option to a multiple of Block
	// bytes (RFC 8467: QueryPadBlock); zero means no padding.
	Block int
	// NewOPT gives a query without an OPT record one (payload size
	// MinUDPSize, version 0, no flags) to carry the options; without it,
	// such a query passes unchanged.
	NewOPT bool
}

// AppendStreamQuery appends to dst the query msg with the options o asks
// for at the end of its OPT record, in place of any edns-tcp-keepalive and
// Padding options it had, and reports whether it changed it. It appends
// msg unchanged if msg has no OPT record and o.NewOPT is false, if the OPT
// record is not msg's last record or its options are not well framed, if
// another additional record follows it or stands without one (a TSIG or
// SIG(0) signature would break), if msg does not parse as far as the OPT
// record, or if the result would exceed 65535 bytes. It does not allocate
// when dst has room. dst must not overlap msg.
//
// With padding, the Padding option comes last and the message length is a
// multiple of o.Block (RFC 8467's block-length strategy).
func AppendStreamQuery(dst, msg []byte, o StreamQuery) ([]byte, bool) {
	opt, hasOPT, ok := lastOPT(msg)
	if !ok || !hasOPT && (!o.NewOPT || be16(msg[10:]) != 0) {
		return append(dst, msg...), false
	}
	start := len(dst)
	var rdlen int // offset of the OPT's RDLENGTH in dst
	if hasOPT {
		dst = append(dst, msg[:opt.hdr+8]...)
		rdlen = len(dst)
		dst = append(dst, 0, 0)
		for p := opt.hdr + 10; p < opt.end; {
			next := p + optHeaderLen + int(be16(msg[p+2:]))
			if code := be16(msg[p:]); code != dns.EDNS0TCPKEEPALIVE && code != dns.EDNS0PADDING {
				dst = append(dst, msg[p:next]...)
			}
			p = next
		}
	} else {
		dst = append(dst, msg...)
		dst = appendNewOPT(dst, MinUDPSize, 0, nil)
		rdlen = len(dst) - 2
		binary.BigEndian.PutUint16(dst[start+10:], 1) // ARCOUNT: the OPT
	}
	if o.Keepalive {
		dst = append(dst, 0, dns.EDNS0TCPKEEPALIVE, 0, 0)
	}
	if o.Block > 0 {
		n := len(dst) - start + optHeaderLen
		pad := (o.Block - n%o.Block) % o.Block
		dst = append(dst, 0, dns.EDNS0PADDING, byte(pad>>8), byte(pad))
		for range pad {
			dst = append(dst, 0)
		}
	}
	if len(dst)-start > MaxTCPSize || len(dst)-rdlen-2 > 0xFFFF {
		return append(dst[:start], msg...), false
	}
	binary.BigEndian.PutUint16(dst[rdlen:], uint16(len(dst)-rdlen-2))
	return dst, true
}

// StripStreamOptions removes the edns-tcp-keepalive and Padding options
// from the OPT record of the answer msg, in place, and returns the shorter
// message. If the answer had an edns-tcp-keepalive option with a TIMEOUT,
// it returns that idle timeout too (RFC 7828 section 3.1: units of 100
// milliseconds; zero asks the client to close the connection once it has
// no query in flight) and ok true. msg is returned unchanged, with ok
// false, if its OPT record is not its last record, if its options are not
// well framed, or if it does not parse as far as that. It never allocates.
// Like PrepareAnswer it relies on RFC 1035 compression, pointers to prior
// names only: a name pointing into the OPT record (no encoder makes one)
// would read the moved bytes.
func StripStreamOptions(msg []byte) (out []byte, keepalive time.Duration, ok bool) {
	opt, hasOPT, parsed := lastOPT(msg)
	if !parsed || !hasOPT {
		return msg, 0, false
	}
	w := opt.hdr + 10
	for p := opt.hdr + 10; p < opt.end; {
		code, n := be16(msg[p:]), int(be16(msg[p+2:]))
		next := p + optHeaderLen + n
		switch code {
		case dns.EDNS0TCPKEEPALIVE:
			if n == 2 {
				keepalive, ok = time.Duration(be16(msg[p+4:]))*100*time.Millisecond, true
			}
		case dns.EDNS0PADDING:
		default:
			w += copy(msg[w:], msg[p:next])
		}
		p = next
	}
	binary.BigEndian.PutUint16(msg[opt.hdr+8:], uint16(w-opt.hdr-10))
	return msg[:w], keepalive, ok
}

// lastOPT locates the OPT record of msg: its last record, in the
// additional section, with well-framed options, and the only OPT record.
// parsed is false if msg does not parse that far (or has trailing bytes),
// or has an OPT record elsewhere, or one with options that are not well
// framed; hasOPT is false (with parsed true) if msg has no OPT record.
func lastOPT(msg []byte) (opt rr, hasOPT, parsed bool) {
	if len(msg) < headerLen {
		return rr{}, false, false
	}
	qd := int(be16(msg[4:]))
	an, ns, ar := int(be16(msg[6:])), int(be16(msg[8:])), int(be16(msg[10:]))
	off := headerLen
	for range qd {
		end, err := skipName(msg, off)
		if err != nil || end+4 > len(msg) {
			return rr{}, false, false
		}
		off = end + 4
	}
	n := an + ns + ar
	var r rr
	for i := range n {
		var err error
		if r, err = scanRR(msg, off); err != nil {
			return rr{}, false, false
		}
		if r.rrtype == dns.TypeOPT && (i != n-1 || i < an+ns) {
			return rr{}, false, false
		}
		off = r.end
	}
	if off != len(msg) {
		return rr{}, false, false
	}
	if n == 0 || ar == 0 || r.rrtype != dns.TypeOPT {
		return rr{}, false, true
	}
	for p := r.hdr + 10; p < r.end; {
		if p+optHeaderLen > r.end {
			return rr{}, false, false
		}
		p += optHeaderLen + int(be16(msg[p+2:]))
		if p > r.end {
			return rr{}, false, false
		}
	}
	return r, true, true
}
