package edns

import (
	"encoding/binary"
	"fmt"

	"github.com/miekg/dns"
)

// Query is what the proxy learns from a client query while preparing it for
// upstream, and what PrepareAnswer needs to turn the upstream answer into the
// client's answer. It is small and holds no pointers; keep it with the
// pending request.
type Query struct {
	// ID is the client's message ID. The prepared query keeps it; a caller
	// that changes the upstream ID must restore it in the answer before
	// PrepareAnswer.
	ID uint16

	// Limit is the largest answer the client accepts: MinUDPSize if it sent
	// no OPT record, else its advertised size but at least MinUDPSize
	// (ClientLimit). PrepareQuery assumes UDP; for a query that arrived over
	// TCP, set Limit to MaxTCPSize.
	Limit int

	// HadOPT reports whether the client sent an OPT record. If it did not,
	// PrepareAnswer removes the OPT record from the answer (RFC 6891
	// section 7).
	HadOPT bool

	q question

	// cookie says what cookieBytes holds: nothing, the client cookie of
	// the query's first COOKIE option, or that and the server cookie made
	// by Cookies.Stamp, in the layout of the COOKIE option's data.
	cookie      cookieState
	cookieBytes [clientCookieLen + serverCookieLen]byte
}

// cookieState is what a Query knows of the client's DNS cookie.
type cookieState uint8

const (
	cookieNone    cookieState = iota // the client sent no cookie
	cookieClient                     // its client cookie is known
	cookieStamped                    // and Cookies.Stamp made a server cookie
)

// queryScan is the result of validating a client query.
type queryScan struct {
	id      uint16
	ar      int // ARCOUNT
	q       question
	opt     rr     // the client's OPT record, if hasOPT
	size    uint16 // the client's advertised payload size, if hasOPT
	version uint8  // the EDNS version of the OPT record, if hasOPT
	hasOPT  bool
	ecs     bool // the OPT carries an EDNS Client Subnet option
	cookie  bool // the OPT carries a COOKIE option
	signed  bool // the last additional record is a TSIG or SIG(0)
	// bare: no additional record but the client's OPT. Then the message
	// holds no compression pointer at all (the question may not, the OPT
	// owner is the root and its RDATA holds no names), so it may be
	// rewritten on the wire.
	bare bool
	// simple: bare, and the OPT has only options that miekg/dns keeps as
	// opaque bytes. The wire checks of scanQuery then imply that miekg/dns
	// parses the query; other queries are parsed with it to make sure.
	simple bool
	client [clientCookieLen]byte // the client cookie, if cookie
}

// scanQuery validates a client query on the wire: at least a header, at
// most 65535 bytes, QR clear, opcode QUERY, one question with an
// uncompressed name of at most 255 bytes, no answer or authority records,
// additional records that lie within the message, at most one OPT record,
// owned by the root, and no bytes after the last record. The OPT record
// must have EDNS version 0 (else ErrBadVersion), well-framed options and
// COOKIE options of a valid length. A query without a question is a
// cookie-only query (ErrCookieOnly) if its OPT carries a COOKIE option,
// else malformed. Other header bits (RD, CD, AD, TC, Z, ...) are not
// checked.
func scanQuery(pkt []byte) (queryScan, error) {
	var s queryScan
	if len(pkt) < headerLen {
		return s, errShort
	}
	if len(pkt) > MaxTCPSize {
		return s, errTooLong
	}
	if pkt[2]&0x80 != 0 {
		return s, errQR
	}
	if pkt[2]&0x78 != 0 {
		return s, errOpcode
	}
	qd := be16(pkt[4:])
	if qd > 1 {
		return s, errQDCount
	}
	if be16(pkt[6:]) != 0 || be16(pkt[8:]) != 0 {
		return s, errANNSCount
	}
	s.id = be16(pkt)
	s.ar = int(be16(pkt[10:]))
	off := headerLen
	if qd == 1 {
		q, end, err := scanQuestion(pkt, headerLen)
		if err != nil {
			return s, err
		}
		s.q, off = q, end
	}
	opaque := true
	for range s.ar {
		r, err := scanRR(pkt, off)
		if err != nil {
			return s, err
		}
		if r.rrtype == dns.TypeOPT {
			if s.hasOPT {
				return s, errTwoOPT
			}
			if r.hdr != r.start+1 {
				return s, errOPTName
			}
			s.opt = r
			s.size = be16(pkt[r.hdr+2:])
			s.version = pkt[r.hdr+5]
			s.hasOPT = true
			// The options of another version may have another syntax:
			// BADVERS whatever they hold.
			if s.version == 0 {
				if opaque, err = s.checkOptions(pkt); err != nil {
					return s, err
				}
			}
		}
		s.signed = r.rrtype == dns.TypeTSIG || r.rrtype == dns.TypeSIG
		off = r.end
	}
	if off != len(pkt) {
		return s, errTrailing
	}
	if s.hasOPT && s.version != 0 {
		return s, ErrBadVersion
	}
	if qd == 0 {
		if s.cookie {
			return s, ErrCookieOnly
		}
		return s, errQDCount
	}
	s.bare = s.ar == 0 || s.ar == 1 && s.hasOPT
	s.simple = s.bare && opaque
	return s, nil
}

// checkOptions checks the option framing of the query's OPT record and the
// length of its COOKIE options, notes Client Subnet and COOKIE options and
// the first client cookie, and reports whether every option is one that
// miekg/dns keeps as opaque bytes, so that unpacking and packing it gives
// the same bytes back.
func (s *queryScan) checkOptions(b []byte) (opaque bool, err error) {
	opaque = true
	for p := s.opt.hdr + 10; p < s.opt.end; {
		if p+4 > s.opt.end {
			return false, errOPTOption
		}
		code, n := be16(b[p:]), int(be16(b[p+2:]))
		if p+4+n > s.opt.end {
			return false, errOPTOption
		}
		switch code {
		case dns.EDNS0COOKIE:
			if !validCookieLen(n) {
				return false, errCookieLen
			}
			if !s.cookie {
				// RFC 7873 section 5.2: the first one counts.
				copy(s.client[:], b[p+4:])
				s.cookie = true
			}
		case dns.EDNS0SUBNET:
			s.ecs = true
			opaque = false
		case dns.EDNS0LLQ, dns.EDNS0UL, dns.EDNS0EXPIRE,
			dns.EDNS0TCPKEEPALIVE, dns.EDNS0EDE, dns.EDNS0ESU,
			dns.EDNS0REPORTING, dns.EDNS0ZONEVERSION:
			// Options with structure that miekg/dns parses (and may
			// reject or normalise).
			opaque = false
		}
		p += 4 + n
	}
	return opaque, nil
}

// checkQuery validates a client query: scanQuery, and for anything but the
// simple layouts a parse with miekg/dns, whose result it returns, so that
// every output of PrepareQuery parses with it.
func checkQuery(pkt []byte) (queryScan, *dns.Msg, error) {
	s, err := scanQuery(pkt)
	if err != nil {
		return s, nil, err
	}
	if s.simple {
		return s, nil, nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(pkt); err != nil {
		return s, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, m, nil
}

func (s *queryScan) query() Query {
	q := Query{ID: s.id, Limit: clientLimit(s.hasOPT, s.size), HadOPT: s.hasOPT, q: s.q}
	if s.cookie {
		q.cookie = cookieClient
		copy(q.cookieBytes[:], s.client[:])
	}
	return q
}

// PrepareQuery validates the client query pkt and appends to dst the query
// to send upstream, returning the extended buffer and what PrepareAnswer will
// need. On error dst is returned unchanged and the error wraps one of
// ErrNotQuery (QR set, opcode not QUERY), ErrBadVersion (EDNS version not
// 0), ErrCookieOnly (a valid cookie-only query: nothing to send upstream)
// or ErrMalformed (everything else); ErrorReply builds the client's answer
// to each, or says to drop the packet.
//
// The rewrite: if payloadSize is above MinUDPSize, a query without OPT gets
// one (root owner, version 0, DO clear, no options, the given size) and the
// client's own OPT gets its size set to payloadSize, its DO bit, extended
// RCODE, version, Z flags and options kept. If payloadSize is MinUDPSize or
// less the size is left alone, and so is a query signed with TSIG or SIG(0),
// whose signature any change would break. One change is always made: EDNS
// Client Subnet options ([RFC 7871]) and COOKIE options ([RFC 7873]) are
// removed from the client's OPT, so that no client's subnet and no client
// cookie (which would link its queries) leaves the proxy, even from a
// signed query (whose signature then fails). No option is ever added. The
// Query remembers the client cookie of the first COOKIE option;
// Cookies.Stamp and PrepareAnswer give the client's answer a COOKIE option
// made locally.
//
// A valid query has QR clear, opcode QUERY, exactly one question whose name
// is uncompressed and at most 255 bytes long, no answer or authority records,
// at most one OPT record (owned by the root, EDNS version 0, options well
// framed, COOKIE options 8 or 16 to 40 bytes long) and no bytes after its
// last record. Other header bits pass unchanged. A query with additional
// records besides its OPT, or with options that have a structure (Client
// Subnet, ...), must also parse with miekg/dns.
//
// Queries whose only additional record is the OPT, if any, and that carry
// no Client Subnet option are handled on the wire bytes, without allocating
// when dst has room (unless an option needs the parse above); the client's
// other options are then kept byte for byte. Other layouts, where a
// compression pointer could refer to bytes that the rewrite changes, and
// queries with a Client Subnet option go through Unpack, SetPayloadSize (or
// the removal of Client Subnet and COOKIE options alone) and Pack, and the
// result must parse again. Either way the result is the message that
// Unpack, SetPayloadSize and Pack give, byte for byte when the options are
// opaque (padding, NSID, ...); the wire path keeps structured options
// exactly as sent where miekg/dns would normalise them. dst may be pkt[:0]:
// the query is then rewritten in place (it grows by 11 bytes when an OPT is
// added).
//
// [RFC 7871]: https://www.rfc-editor.org/rfc/rfc7871
// [RFC 7873]: https://www.rfc-editor.org/rfc/rfc7873
func PrepareQuery(dst, pkt []byte, payloadSize uint16) ([]byte, Query, error) {
	s, m, err := checkQuery(pkt)
	if err != nil {
		return dst, Query{}, err
	}
	q := s.query()
	start := len(dst)
	rewrite := payloadSize > MinUDPSize && !s.signed
	switch {
	case s.ecs || (rewrite || s.cookie) && !s.bare:
		// m is set: neither layout is simple.
		if rewrite {
			SetPayloadSize(m, payloadSize)
		} else {
			removePrivate(m.IsEdns0())
		}
		out, err := m.Pack()
		if err != nil {
			return dst, Query{}, fmt.Errorf("%w: packing: %w", ErrMalformed, err)
		}
		if len(out) > MaxTCPSize {
			return dst, Query{}, errOutputTooBig
		}
		if err := new(dns.Msg).Unpack(out); err != nil {
			// miekg/dns does not pack back every odd record it unpacks.
			return dst, Query{}, fmt.Errorf("%w: repacking: %w", ErrMalformed, err)
		}
		dst = append(dst, out...)
	case s.cookie:
		// Bare: the OPT is the last record and no name points into it.
		dst = append(dst, pkt[:s.opt.start]...)
		dst = appendOPT(dst, pkt, s.opt, nil)
		if rewrite {
			binary.BigEndian.PutUint16(dst[start+s.opt.hdr+2:], payloadSize)
		}
	case !rewrite:
		dst = append(dst, pkt...)
	case s.hasOPT:
		dst = append(dst, pkt...)
		binary.BigEndian.PutUint16(dst[start+s.opt.hdr+2:], payloadSize)
	default:
		if len(pkt)+newOPTLen > MaxTCPSize {
			return dst, Query{}, errOutputTooBig
		}
		dst = append(dst, pkt...)
		binary.BigEndian.PutUint16(dst[start+10:], 1)
		// TTL: extended RCODE, version, DO and Z all zero.
		dst = appendNewOPT(dst, payloadSize, 0, nil)
	}
	return dst, q, nil
}

// TCReplyBytes validates the client query pkt as PrepareQuery does and appends
// to dst the immediate TC reply of dnscrypt-proxy 1.x --tcp-only: the query
// echoed with byte 2 |= 0x82 (QR, TC) and byte 3 |= 0x80 (RA), nothing else
// changed. The answer and authority sections are empty (a valid query has
// none); the additional section is echoed, so a client that sent an OPT
// record gets its own OPT back (dig warns about a reply without one), and a
// client that sent none gets none. Unlike 1.x, which echoed the query after
// its OPT rewrite, the reply never carries the proxy's upstream payload
// size. A COOKIE option is echoed as the client sent it: the TC reply
// carries no server cookie made by the proxy, the answer over TCP does
// (Cookies.Stamp). A query that PrepareQuery refuses is refused here too;
// ErrorReply answers it.
//
// A query with additional records besides its OPT, where a compression
// pointer could refer to the header bytes that change, is re-encoded
// through TCReply instead: the same message, possibly other bytes. dst may
// be pkt[:0].
func TCReplyBytes(dst, pkt []byte) ([]byte, error) {
	s, m, err := checkQuery(pkt)
	if err != nil {
		return dst, err
	}
	if !s.bare {
		out, err := TCReply(m).Pack()
		if err == nil {
			err = new(dns.Msg).Unpack(out)
		}
		if err != nil {
			return dst, fmt.Errorf("%w: repacking: %w", ErrMalformed, err)
		}
		return append(dst, out...), nil
	}
	start := len(dst)
	dst = append(dst, pkt...)
	dst[start+2] |= 0x82
	dst[start+3] |= 0x80
	return dst, nil
}
