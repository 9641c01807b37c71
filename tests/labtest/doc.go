// Package labtest starts the project's real-server test lab (tests/lab) from Go
// tests: an authoritative unbound backend for the signed zone lab.test (also
// serving DNS-over-TLS and DNS-over-HTTPS), dnsdist as a DNSCrypt v2 server
// with three binds (XSalsa20Poly1305, XChaCha20Poly1305, and both), a second,
// independent DNSCrypt server (github.com/ameshkov/dnscrypt, built from
// tests/tools), dnsdist's plain, DoT and DoH ports, dnsdist's console, and two
// microsocks SOCKS5 servers (without and with username/password). The TLS
// listeners have self-signed certificates made at each start; the Lab carries
// their PEM files, pins and sdns:// stamps. [Lab.StartStubby] adds a stubby in
// front of a DoT listener. Everything listens on 127.0.0.1 only.
//
// Each [Start] picks its own free loopback ports and state directory, so tests
// in several packages (and several test binaries) may run labs at the same
// time. A test uses it like this:
//
//	func TestAgainstDnsdist(t *testing.T) {
//		lab := labtest.StartTB(t, labtest.Options{NoGoServer: true})
//		// lab.XSalsa is "127.0.0.1:PORT", lab.ProviderName and lab.ProviderKey
//		// identify the resolver, lab.StampXSalsa is its sdns:// stamp.
//		...
//		out, err := lab.Rotate("-b", strconv.Itoa(lab.BindOf(lab.XSalsa)))
//		...
//	}
//
// [StartTB] stops the lab when the test ends. When the lab's programs are not
// installed (see tests/lab/install.sh) or the Go server cannot be built, the
// test is skipped, except under CI=true, where a missing real component is a
// failure ([Require]). If the test binary dies without running its cleanups
// (killed, timed out), a watchdog started with the lab stops it within about a
// second.
//
// The lab's programs and behaviour (zone contents, certificate rotation,
// known dnsdist quirks) are described in tests/lab/README.md. The package
// needs bash and Linux (/proc); it is for tests only.
package labtest
