package tests

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestTorLeak runs the proxy in Tor mode inside a leakNS whose only door
// is a forwarder of Tor's SOCKS port, and counts every packet the
// namespace sends anywhere else (see leakNS) across start-up, queries, a
// forced certificate refresh, SOCKS going down and coming back, and
// shutdown. The count must be zero.
func TestTorLeak(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	proxyPort := freePort(t)
	ns := newLeakNS(t, leakNSConfig{ClientPorts: []int{proxyPort}})

	// The only door: a forwarder from the veth to Tor's SOCKS port.
	door := startForwarder(t, nil, ns.Door(), tor.SOCKS)

	inNS := ns.Exec
	dig := func(args ...string) *digResult {
		return runDigCmd(t, inNS, "dig", append([]string{"@127.0.0.1", "-p", strconv.Itoa(proxyPort)}, args...)...)
	}
	waitStatus := func(want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			r := dig("+tcp", "www.lab.test", "A")
			if r.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within %v (last %q)", want, within, r.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Start-up: the certificate comes through Tor.
	p := startProxyCmd(t, inNS, append(append(labArgs(lab, lab.Go), "--tor", "--proxy=socks5://"+ns.Door(), labPrivate),
		fmt.Sprintf("--local-address=127.0.0.1:%d", proxyPort), "--timeout=3s", "--loglevel=7")...)
	waitStatus("NOERROR", 60*time.Second)

	// Queries of every kind, over UDP and TCP.
	for _, tc := range typeCases {
		for _, transport := range []string{"+notcp", "+tcp"} {
			if r := dig(append([]string{transport}, tc.args...)...); r.Status != "NOERROR" && r.Status != "NXDOMAIN" {
				t.Errorf("%s %s: %q\n%s", tc.name, transport, r.Status, r.Out)
			}
		}
	}

	// Names that never leave the machine: answered locally, and not one
	// packet through the door, not even to Tor, while they are asked (once
	// the traffic of the queries above has died down).
	var quiet int
	for deadline, last := time.Now().Add(30*time.Second), -1; ; time.Sleep(500 * time.Millisecond) {
		if quiet = ns.DoorPackets(t); quiet == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the SOCKS door never went quiet")
		}
		last = quiet
	}
	for _, tc := range specialNameCases {
		for _, transport := range []string{"+notcp", "+tcp"} {
			if r := dig(append([]string{transport}, tc.args...)...); r.Status != tc.status {
				t.Errorf("%q %s: %q, want %s\n%s", tc.args, transport, r.Status, tc.status, r.Out)
			}
		}
	}
	if n := ns.DoorPackets(t) - quiet; n != 0 {
		t.Errorf("%d packets went to the SOCKS proxy while only special-use names were asked", n)
	}

	// A forced certificate refresh.
	p.signal(syscall.SIGUSR1)
	waitLog(t, p, "Keeping certificate", 30*time.Second)

	// SOCKS goes down: SERVFAIL, and a refresh attempt fails.
	door.Stop()
	waitStatus("SERVFAIL", 10*time.Second)
	p.signal(syscall.SIGUSR1)
	waitLog(t, p, "Unable to retrieve server certificates", 30*time.Second)
	dig("www.lab.test", "MX")

	// SOCKS comes back: answers again, by itself.
	door.Start(t)
	waitStatus("NOERROR", 30*time.Second)

	// Shutdown.
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	if c := ns.Leaks(t); c != 0 {
		t.Fatalf("%d packets left the namespace outside the SOCKS connection\n%s", c, p.output())
	}

	// The counter counts: a query to the resolver of resolv.conf is caught.
	runDigCmd(t, inNS, "dig", "+time=1", "+tries=1", "example.com")
	if c := ns.Leaks(t); c == 0 {
		t.Fatal("control: a DNS query to resolv.conf's address was not counted")
	}
}
