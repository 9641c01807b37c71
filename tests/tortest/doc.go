// Package tortest runs a real, private Tor network on 127.0.0.1 for tests
// (tests/torlab): three directory authorities, a middle relay, two exit
// relays that may only exit to 127.0.0.0/8, and a Tor client with a
// SocksPort, a ControlPort (cookie authentication) and a DNSPort. Nothing
// talks to the public Tor network. A test sends TCP through the client's
// SocksPort, across the relays and out of an exit, to a service of its own
// on 127.0.0.1:
//
//	func TestThroughTor(t *testing.T) {
//		n := tortest.StartTB(t, tortest.Options{})
//		d, _ := proxy.SOCKS5("tcp", n.SOCKS, &proxy.Auth{User: "case-1", Password: "x"}, proxy.Direct)
//		c, err := d.Dial("tcp", echoAddr) // echoAddr: a listener on 127.0.0.1:0
//		...
//	}
//
// Start takes 10-25 s (key generation, a wait of up to 5 s for the
// authorities' voting slot, the first consensus, the client's bootstrap),
// and returns only once a SOCKS5 CONNECT through an exit works. Each network
// uses its own block of ports below the kernel's ephemeral range, so several
// test binaries may run networks at once, and a service on 127.0.0.1:0 is
// never on a relay's port (tor refuses those as targets).
//
// Options.OnionServices publishes onion services (v3) on one more tor that
// is no relay, each forwarding to a loopback target such as a lab's DoT
// listener; Start returns once each is reachable through the client, and
// [Network.OnionAddr] gives its "HOST.onion:PORT" to dial through the
// SocksPort:
//
//	n := tortest.StartTB(t, tortest.Options{OnionServices: []tortest.OnionService{
//		{Name: "dot", Port: 853, Target: lab.DoT}, // lab: a labtest.Lab, started first
//	}})
//	c, err := d.Dial("tcp", n.OnionAddr("dot")) // d: a SOCKS5 dialer to n.SOCKS
//
// Tests can stop and restart the client alone ([Network.StopClient],
// [Network.StartClient]), freeze the relays so that the client cannot
// bootstrap or open streams ([Network.PauseRelays]), run control port
// commands ([Network.Control]) and watch the streams the client opens, with
// their circuit and SOCKS username ([Network.WatchStreams]). Every SOCKS username/password gets its own
// circuit (IsolateSOCKSAuth).
//
// Things a test must know (details in tests/torlab/README.md):
//   - Use timeouts of seconds: a CONNECT takes about 20-50 ms on an open
//     circuit and 60-160 ms with a new username, and new circuits may stall
//     2-3 s when relays republish their descriptors.
//   - An IP target on 127.0.0.1 is pinned to one exit ("exit enclave"): the
//     target reads "127.0.0.1.<FINGERPRINT>.exit:PORT" in stream events
//     ([StreamEvent.SplitExit]), and its circuits may have 4 hops.
//   - Hostname targets work only if the exits' resolver (Options.ExitDNS)
//     answers, and it must run before Start.
//   - Circuits may be conflux legs; a stream stays on the leg it was
//     attached to, and a username's streams go to the same leg.
//
// [StartTB] skips the test when tor is not installed, except under CI=true,
// where that is a failure (the rule of [labtest.Require]). The tors exit by
// themselves within about 15 s if the test binary dies. The package needs
// bash, tor, tor-gencert, iproute2 and Linux; it is for tests only.
package tortest
