// Package edns prepares DNS messages around the encrypted hop: it adds or
// rewrites the EDNS(0) OPT record of a client query with the proxy's UDP
// payload size ([RFC 6891]), remembers the client's own answer limit, and
// turns the upstream answer into one the client can take: OPT removed if the
// client sent none, cut down with TC set if larger than the client's limit.
// It also builds the immediate TC reply of dnscrypt-proxy 1.x --tcp-only,
// the proxy's own answers to queries it refuses (FORMERR, BADVERS, NOTIMP)
// and to cookie-only queries, and keeps DNS cookies ([RFC 7873]) between the
// client and the proxy.
//
// Rules, after dnscrypt-proxy 1.x (edns.c) with the RFC 6891 fixes:
//
//   - A payload size above MinUDPSize (default DefaultPayloadSize) is written
//     into the client's OPT record, or into a new OPT if it sent none. The
//     DO bit, extended RCODE, version (always 0) and options of the client's
//     OPT are kept, but for EDNS Client Subnet and COOKIE.
//   - A payload size of MinUDPSize or less disables the rewrite: queries,
//     with or without the client's own OPT, pass unchanged.
//   - A query signed with TSIG or SIG(0) passes unchanged: a rewrite would
//     break its signature.
//   - The exceptions to both: no Client Subnet option and no COOKIE option
//     ever goes upstream (Tor privacy). The client's are always removed,
//     from a signed query too, and none is ever added. A client cookie is
//     often stable for months and would link the client's queries across
//     Tor circuits.
//   - The client's limit is MinUDPSize without OPT, else the larger of its
//     advertised size and MinUDPSize; MaxTCPSize over TCP. A larger answer is
//     truncated as [github.com/miekg/dns.Msg.Truncate] does: TC set, the
//     question kept, whole records dropped from the end.
//   - A client that sent no OPT never gets one back.
//   - The resolver's cookie never reaches the client. A client that sends
//     a cookie gets one from the proxy instead: its client cookie and a
//     server cookie made by Cookies ([RFC 9018] layout, a per-process
//     secret).
//   - A message shorter than a header, or with QR set, gets no answer. A
//     query that is refused gets FORMERR, or BADVERS for an EDNS version
//     other than 0, or NOTIMP for an opcode other than QUERY; a cookie-only
//     query gets NOERROR with a cookie (ErrorReply). These answers echo the
//     ID, opcode, RD and CD bits, the question if there is exactly one that
//     parses, and an OPT record only if the query had a usable one; they
//     fit in 512 bytes.
//
// The hot path works on wire bytes and does not allocate when the
// destination buffer has room:
//
//	cookies := edns.NewCookies(secret) // once: secret from crypto/rand
//	...
//	up, q, err := edns.PrepareQuery(buf[:0], pkt, edns.DefaultPayloadSize)
//	if err != nil {
//		out, ok := edns.ErrorReply(buf[:0], pkt, cookies, clientIP, time.Now())
//		if ok {
//			// write out to the client: FORMERR, BADVERS, NOTIMP, cookie
//		}
//		return err // else drop the packet
//	}
//	cookies.Stamp(&q, clientIP, time.Now())
//	if overTCP {
//		q.Limit = edns.MaxTCPSize
//	}
//	// ... seal up, send it, open the upstream answer into ans ...
//	out, err := edns.PrepareAnswer(ans[:0], ans, q) // in place
//	if err != nil {
//		return err // the answer does not match the query: drop it
//	}
//	// write out to the client
//
// The same operations exist for [github.com/miekg/dns.Msg] values:
// SetPayloadSize, ClientLimit, Truncate and TCReply. The wire functions fall
// back to them for rare layouts where editing bytes could upset name
// compression (records besides the OPT, an OPT that is not the last record),
// and are tested against them on generated and fuzzed messages. The package
// does no I/O and never logs.
//
// [RFC 6891]: https://www.rfc-editor.org/rfc/rfc6891
// [RFC 7873]: https://www.rfc-editor.org/rfc/rfc7873
// [RFC 9018]: https://www.rfc-editor.org/rfc/rfc9018
package edns
