// Package names keeps two promises of a Tor-first DNS proxy about names.
//
// Names that must never leave the machine are answered locally (Local): Tor's
// .onion ([RFC 7686]) and .exit names, localhost ([RFC 6761]), the
// special-use names of a local network (.local, .internal, .home.arpa,
// .invalid, .alt, resolver.arpa, service.arpa) and the reverse zones of
// private and special address space ([RFC 6303], [RFC 7793]), as unbound's
// default local zones answer them. A query for abcdef...onion sent to a
// public resolver tells it, and the Tor exit, which onion service the user
// is about to visit; Tor's DNSPort never does that, and neither does this
// proxy. .test is not among them: labs and tests use it.
//
// Answers that point names at internal addresses (private, loopback,
// link-local, unique-local, carrier-grade NAT, unspecified, broadcast, and
// the IPv6 forms of those IPv4 addresses) lose those records (Filter), as
// Tor's ClientDNSRejectInternalAddresses does: through a Tor exit or a
// resolver, such an answer lets a web page reach the local network (DNS
// rebinding).
//
// The user may list suffixes that go upstream anyway and whose answers may
// hold internal addresses: a lab zone, an internal domain, a private reverse
// zone (Config.Forward, like unbound's private-domain).
//
// Both run on every query on the wire bytes and do not allocate on the common
// paths:
//
//	p, err := names.New(names.Config{Forward: []string{"corp.internal"}, FilterInternal: torMode})
//	// ...
//	if out, why, ok := p.Local(buf[:0], pkt, payloadSize); ok {
//		log.Debug("Answered locally", "why", why)
//		return out // to the client; nothing goes upstream
//	}
//	// ... edns.PrepareQuery, send upstream, receive ans ...
//	ans, rm, err := p.Filter(ans[:0], ans)
//	if err != nil {
//		return servfail()
//	}
//	if len(rm.Addrs) > 0 {
//		log.Info("Removed internal addresses from an answer", "name", rm.Name, "removed", rm)
//	}
//	// ... edns.PrepareAnswer(out, ans, q) ...
//
// The package does no I/O and never logs.
//
// [RFC 6303]: https://www.rfc-editor.org/rfc/rfc6303
// [RFC 6761]: https://www.rfc-editor.org/rfc/rfc6761
// [RFC 7686]: https://www.rfc-editor.org/rfc/rfc7686
// [RFC 7793]: https://www.rfc-editor.org/rfc/rfc7793
package names
