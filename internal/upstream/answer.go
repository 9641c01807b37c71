package upstream

import (
	"errors"
	"fmt"
)

// Why checkAnswer refuses an answer; each wraps ErrCorrupt.
var (
	errAnswerShort    = fmt.Errorf("%w: shorter than a DNS header", ErrCorrupt)
	errAnswerLong     = fmt.Errorf("%w: longer than 65535 bytes", ErrCorrupt)
	errAnswerID       = fmt.Errorf("%w: not the query's ID", ErrCorrupt)
	errAnswerQR       = fmt.Errorf("%w: QR clear", ErrCorrupt)
	errAnswerOpcode   = fmt.Errorf("%w: not the query's opcode", ErrCorrupt)
	errAnswerQDCount  = fmt.Errorf("%w: more than one question", ErrCorrupt)
	errAnswerNoQ      = fmt.Errorf("%w: no question in a NOERROR answer", ErrCorrupt)
	errAnswerQuestion = fmt.Errorf("%w: not the query's question", ErrCorrupt)
	errQueryFraming   = errors.New("upstream: the query does not parse")
)

// checkAnswer reports whether ans is a DNS message answering query, and
// returns its layout. It must be 12 to 65535 bytes long, frame as a DNS
// message (walkMessage), have QR set and the query's ID and opcode, and
// ask the query's question (the name compared without regard to ASCII
// case); an answer with an error RCODE may ask none, or be a bare header,
// as edns.PrepareAnswer allows (layout.last is then -1). Errors wrap
// ErrCorrupt, except errQueryFraming for a query that does not parse
// (never one that edns.PrepareQuery made).
func checkAnswer(ans, query []byte) (layout, error) {
	switch {
	case len(ans) < dnsHeaderLen:
		return layout{}, errAnswerShort
	case len(ans) > maxMsgLen:
		return layout{}, errAnswerLong
	case be16(ans) != be16(query):
		return layout{}, errAnswerID
	case ans[2]&0x80 == 0:
		return layout{}, errAnswerQR
	case ans[2]&0x78 != query[2]&0x78:
		return layout{}, errAnswerOpcode
	}
	rcode := ans[3] & 0x0F
	if len(ans) == dnsHeaderLen && rcode != 0 {
		return layout{last: -1, qEnd: dnsHeaderLen}, nil
	}
	l, err := walkMessage(ans)
	if err != nil {
		return l, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	switch be16(ans[4:]) {
	case 0:
		if rcode == 0 {
			return l, errAnswerNoQ
		}
		return l, nil
	case 1:
	default:
		return l, errAnswerQDCount
	}
	ql, err := walkMessage(query)
	if err != nil || be16(query[4:]) != 1 {
		return l, errQueryFraming
	}
	qq, aq := query[dnsHeaderLen:ql.qEnd], ans[dnsHeaderLen:l.qEnd]
	if len(aq) != len(qq) || !equalFoldName(aq[:len(aq)-4], qq[:len(qq)-4]) ||
		string(aq[len(aq)-4:]) != string(qq[len(qq)-4:]) {
		return l, errAnswerQuestion
	}
	return l, nil
}
