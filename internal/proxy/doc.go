// Package proxy is the runtime of dnscrypt-proxy: it takes plain DNS
// queries on UDP and TCP listeners and answers them with the answers of a
// DNSCrypt v2 resolver, directly or through a SOCKS5 proxy such as Tor.
//
//	p, err := proxy.New(proxy.Config{ResolverAddr: "192.0.2.1:443", ProviderName: name, ProviderKey: pk})
//	pc, _ := net.ListenPacket("udp", "127.0.0.1:53")
//	ln, _ := net.Listen("tcp", "127.0.0.1:53")
//	err = p.Serve(ctx, pc, ln) // until ctx is done
//
// Serve answers at once (SERVFAIL until it holds a valid certificate of the
// resolver), fetches and verifies the certificates, refreshes them hourly,
// and owns every goroutine it starts.
package proxy
