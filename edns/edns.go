package edns

import (
	"errors"
	"slices"

	"github.com/miekg/dns"
)

const (
	// DefaultPayloadSize is the EDNS payload size the proxy advertises upstream
	// unless configured otherwise; dnscrypt-proxy 2.x uses the same value.
	DefaultPayloadSize = 1252

	// MinUDPSize is the DNS UDP message size every client accepts (RFC 1035),
	// and the floor of every advertised EDNS size (RFC 6891 section 6.2.5).
	// A configured payload size at or below it disables the OPT rewrite.
	MinUDPSize = dns.MinMsgSize

	// MaxTCPSize is the answer limit for a client that asked over TCP.
	MaxTCPSize = dns.MaxMsgSize
)

// Sentinel errors. Every error this package returns wraps one of them.
var (
	// ErrNotQuery reports a client message that is not a standard query:
	// QR set (ErrorReply drops it), or an opcode other than QUERY
	// (ErrorReply answers NOTIMP).
	ErrNotQuery = errors.New("edns: not a standard query")

	// ErrMalformed reports a message that cannot be parsed, breaks a count,
	// name or length rule, or carries more than one OPT record. A client
	// query of at least a header gets FORMERR (ErrorReply).
	ErrMalformed = errors.New("edns: malformed message")

	// ErrBadVersion reports a query whose OPT record has an EDNS version
	// other than 0, the only one this package knows. Its answer is BADVERS
	// (ErrorReply).
	ErrBadVersion = errors.New("edns: unsupported EDNS version")

	// ErrCookieOnly reports a cookie-only query ([RFC 7873] section 5.4):
	// no question, and an OPT record with a COOKIE option. It is valid, but
	// there is nothing to ask upstream; ErrorReply answers it.
	//
	// [RFC 7873]: https://www.rfc-editor.org/rfc/rfc7873
	ErrCookieOnly = errors.New("edns: cookie-only query")

	// ErrMismatch reports an answer whose ID, opcode or question does not
	// match the query it is supposed to answer. The proxy drops such answers.
	ErrMismatch = errors.New("edns: answer does not match query")
)

// SetPayloadSize sets the EDNS UDP payload size of m to size: it adds an OPT
// record (version 0, DO clear, no options) if m has none, otherwise it sets
// the size of the existing OPT, removes its EDNS Client Subnet options
// ([RFC 7871]: no client's subnet leaves the proxy) and COOKIE options (no
// client cookie links the proxy's queries, see Cookies) and keeps its DO
// bit, extended RCODE, version, Z flags and other options untouched. A new OPT
// goes before a trailing TSIG or SIG(0) record, which must stay last.
//
// SetPayloadSize always writes size; the rule that a configured size of
// MinUDPSize or less leaves the size alone belongs to the caller
// (PrepareQuery applies it, and removes Client Subnet and COOKIE options
// even then).
//
// [RFC 7871]: https://www.rfc-editor.org/rfc/rfc7871
func SetPayloadSize(m *dns.Msg, size uint16) {
	found := false
	for _, rr := range m.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			opt.SetUDPSize(size)
			removePrivate(opt)
			found = true
		}
	}
	if found {
		return
	}
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(size)
	i := len(m.Extra)
	if i > 0 {
		switch m.Extra[i-1].Header().Rrtype {
		case dns.TypeTSIG, dns.TypeSIG:
			i--
		}
	}
	m.Extra = slices.Insert(m.Extra, i, dns.RR(opt))
}

// ClientLimit returns the largest UDP answer the sender of query m accepts:
// MinUDPSize without an OPT record, otherwise the advertised size but never
// less than MinUDPSize. A client that asked over TCP accepts MaxTCPSize.
func ClientLimit(m *dns.Msg) int {
	opt := m.IsEdns0()
	if opt == nil {
		return clientLimit(false, 0)
	}
	return clientLimit(true, opt.UDPSize())
}

// clientLimit is the rule of ClientLimit for a client that sent an OPT
// record advertising size, or none.
func clientLimit(hasOPT bool, size uint16) int {
	if !hasOPT {
		return MinUDPSize
	}
	return max(MinUDPSize, int(size))
}

// Truncate shrinks the answer m so that it packs into at most limit bytes,
// setting TC when anything is left out. It uses [dns.Msg.Truncate], which
// keeps the question and the OPT record and drops whole records from the
// end of the answer, authority and additional sections; m.Compress is set as
// that method documents. limit is raised to MinUDPSize and lowered to
// MaxTCPSize. Beyond [dns.Msg.Truncate], it removes a TSIG record that would
// not fit (miekg/dns does not truncate signed messages), and clears the OPT
// record's options (padding, NSID, ...) when the header, question and OPT
// alone would not fit. The result exceeds limit only if the header and
// questions alone do.
func Truncate(m *dns.Msg, limit int) {
	limit = min(max(limit, MinUDPSize), MaxTCPSize)
	if m.IsTsig() != nil && packedLen(m) > limit {
		m.Extra = m.Extra[:len(m.Extra)-1]
		m.Truncated = true
	}
	if opt := m.IsEdns0(); opt != nil && len(opt.Option) > 0 {
		bare := dns.Msg{MsgHdr: m.MsgHdr, Question: m.Question}
		if bare.Len()+dns.Len(opt) > limit {
			opt.Option = nil // not a record: no TC for this alone
		}
	}
	m.Truncate(limit)
}

// packedLen is the compressed length of m.
func packedLen(m *dns.Msg) int {
	c := m.Compress
	m.Compress = true
	n := m.Len()
	m.Compress = c
	return n
}

// TCReply builds the immediate TC reply to the query q (dnscrypt-proxy 1.x
// --tcp-only): a copy of q with QR, TC and RA set and everything else kept,
// the question and the additional section (so the client's own OPT record,
// if it sent one) included, and empty answer and authority sections. The
// client retries over TCP. Pass the client's query as received, not one
// already rewritten by SetPayloadSize: the reply must not carry the proxy's
// upstream payload size.
func TCReply(q *dns.Msg) *dns.Msg {
	r := &dns.Msg{MsgHdr: q.MsgHdr}
	r.Response = true
	r.Truncated = true
	r.RecursionAvailable = true
	r.Question = slices.Clone(q.Question)
	for _, rr := range q.Extra {
		r.Extra = append(r.Extra, dns.Copy(rr))
	}
	return r
}

// removePrivate deletes the options of opt that must not go upstream:
// EDNS Client Subnet and COOKIE.
func removePrivate(opt *dns.OPT) {
	opt.Option = slices.DeleteFunc(opt.Option, func(o dns.EDNS0) bool {
		return o.Option() == dns.EDNS0SUBNET || o.Option() == dns.EDNS0COOKIE
	})
}

// removeCookies deletes the COOKIE options of every OPT record in m.
func removeCookies(m *dns.Msg) {
	for _, s := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range s {
			if opt, ok := rr.(*dns.OPT); ok {
				opt.Option = slices.DeleteFunc(opt.Option, func(o dns.EDNS0) bool {
					return o.Option() == dns.EDNS0COOKIE
				})
			}
		}
	}
}

// removeOPT deletes every OPT record from m. If the answer carried an
// extended RCODE, which cannot be expressed without an OPT, the RCODE
// becomes SERVFAIL.
func removeOPT(m *dns.Msg) {
	isOPT := func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT }
	m.Answer = slices.DeleteFunc(m.Answer, isOPT)
	m.Ns = slices.DeleteFunc(m.Ns, isOPT)
	m.Extra = slices.DeleteFunc(m.Extra, isOPT)
	if m.Rcode > 0xF {
		m.Rcode = dns.RcodeServerFailure
	}
}
