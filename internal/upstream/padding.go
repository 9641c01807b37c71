package upstream

import "encoding/binary"

// EDNS(0) padding ([RFC 7830]) of queries over encrypted streams, in the
// block-length policy of [RFC 8467] section 4.1: queries padded to a
// multiple of 128 bytes (servers pad their answers to 468).
//
// [RFC 7830]: https://www.rfc-editor.org/rfc/rfc7830
// [RFC 8467]: https://www.rfc-editor.org/rfc/rfc8467
const (
	queryPadBlock = 128
	optPadding    = 12  // the Padding option's code
	optPayload    = 512 // the payload size of an OPT record added for padding
	newOPTLen     = 11  // an OPT record without options
)

// padQuery appends to dst the query msg with a Padding option that makes
// its length a multiple of block, and returns the extended buffer. The
// option goes at the end of msg's OPT record when that is its last record
// and holds no Padding option yet, or into a new OPT record (payload size
// 512, the DNS default, version 0, no flags) when msg has no additional
// record. Any other message (signed with TSIG or SIG(0), padded already,
// odd layouts) and one that would outgrow 65535 bytes is appended
// unchanged: adding to it could break it, and it is rare.
func padQuery(dst, msg []byte, block int) []byte {
	l, err := walkMessage(msg)
	if err != nil {
		return append(dst, msg...)
	}
	ar := be16(msg[10:])
	var extra int // bytes added besides the padding
	switch {
	case ar == 0:
		extra = newOPTLen + 4
	case l.lastType == typeOPT && l.last >= 0 && msg[l.last] == 0 && !hasOption(msg[l.last+newOPTLen:], optPadding):
		extra = 4
	default:
		return append(dst, msg...)
	}
	pad := (block - (len(msg)+extra)%block) % block
	if len(msg)+extra+pad > maxMsgLen {
		return append(dst, msg...)
	}
	start := len(dst)
	dst = append(dst, msg...)
	rdlen := start + l.last + 9 // the OPT record's RDLENGTH
	if ar == 0 {
		binary.BigEndian.PutUint16(dst[start+10:], 1)
		rdlen = len(dst) + 9
		dst = append(dst, 0, 0, typeOPT, optPayload>>8, optPayload&0xFF, 0, 0, 0, 0, 0, 0)
	}
	binary.BigEndian.PutUint16(dst[rdlen:], be16(dst[rdlen:])+4+uint16(pad))
	dst = append(dst, 0, optPadding, byte(pad>>8), byte(pad))
	return append(dst, make([]byte, pad)...)
}

// hasOption reports whether the OPT record data rdata holds an option of
// the given code; malformed data counts as holding it (leave it alone).
func hasOption(rdata []byte, code uint16) bool {
	for len(rdata) > 0 {
		if len(rdata) < 4 {
			return true
		}
		n := 4 + int(be16(rdata[2:]))
		if be16(rdata) == code || n > len(rdata) {
			return true
		}
		rdata = rdata[n:]
	}
	return false
}

// unpadAnswer removes the Padding options from the OPT record of ans, in
// place, when that record is its last (l is ans's layout), and returns the
// shortened message. A server pads its answer to a padded query; the
// padding is for the encrypted hop only, and would only make the client's
// answer larger (truncated sooner over UDP). Any other layout is returned
// as it is.
func unpadAnswer(ans []byte, l layout) []byte {
	if l.last < 0 || l.lastType != typeOPT || ans[l.last] != 0 {
		return ans
	}
	rdata := ans[l.last+newOPTLen:]
	if !hasOption(rdata, optPadding) || !wellFramed(rdata) {
		return ans
	}
	out := 0 // where the next kept option goes
	for in := 0; in < len(rdata); {
		n := 4 + int(be16(rdata[in+2:]))
		if be16(rdata[in:]) != optPadding {
			out += copy(rdata[out:], rdata[in:in+n])
		}
		in += n
	}
	binary.BigEndian.PutUint16(ans[l.last+9:], uint16(out))
	return ans[:l.last+newOPTLen+out]
}

// wellFramed reports whether the OPT record data rdata is a sequence of
// whole options.
func wellFramed(rdata []byte) bool {
	for len(rdata) > 0 {
		if len(rdata) < 4 || 4+int(be16(rdata[2:])) > len(rdata) {
			return false
		}
		rdata = rdata[4+int(be16(rdata[2:])):]
	}
	return true
}
