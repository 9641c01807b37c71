// Package proxy is the runtime of dnscrypt-proxy: the frontend. It takes
// plain DNS queries on UDP and TCP listeners and answers them with the
// answers of its upstream (package upstream: DNSCrypt, plain DNS over TCP,
// DNS over TLS, DNS over HTTPS; several make a resolverset.Set), directly
// or through a SOCKS5 proxy such as Tor (package egress).
//
//	spec, _ := upstream.ParseURL("tls://192.0.2.1")
//	p, err := proxy.New(proxy.Config{Resolvers: []upstream.Spec{spec}})
//	pc, _ := net.ListenPacket("udp", "127.0.0.1:53")
//	ln, _ := net.Listen("tcp", "127.0.0.1:53")
//	err = p.Serve(ctx, pc, ln) // until ctx is done
//
// The frontend owns the request lifecycle: special-use names answered
// locally (package names), EDNS rewriting and client-size truncation
// (package edns), the cap on requests in flight and its eviction policy,
// the deadline (every request gets an answer, SERVFAIL at the latest),
// the internal-address filter, and the rate-limited failure log. Serve
// answers at once (SERVFAIL until the upstream is ready) and owns every
// goroutine it starts.
package proxy
