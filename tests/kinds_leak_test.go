package tests

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jedisct1/go-dnsstamps"
	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

// leakKind is one kind of upstream as the command line names it.
type leakKind struct {
	name string
	// args name the resolver at addr: "IP:PORT", or through Tor
	// "HOST:PORT" (a name of lab.test the exits resolve, or an onion
	// service's).
	args func(addr string) []string
	// target is the lab's server behind the resolver's address.
	target string
	// stream: one connection per identity carries the queries (not
	// DNSCrypt, which opens one per query).
	stream bool
	// usr1 is what the proxy logs when SIGUSR1 makes it check what it
	// holds; "" when it holds nothing to check (plain TCP, DoT: TLS checks
	// the server at each connection) and logs nothing.
	usr1 []string
}

// leakKinds are the upstream kinds, each in front of one of the lab's
// servers: DNSCrypt (the Go server, which serves its certificate over TCP,
// all SOCKS carries) by 1.x's options, plain TCP (unbound) by its URL form,
// DoT (unbound) and DoH (dnsdist) by stamps pinning the lab's
// certificates (a URL form would check them against the system's roots).
func leakKinds(lab *labtest.Lab) []leakKind {
	return []leakKind{
		{name: "dnscrypt", args: func(addr string) []string { return labArgs(lab, addr) }, target: lab.Go,
			usr1: []string{"Refetching server certificates", "Keeping certificate"}},
		{name: "tcp", args: func(addr string) []string { return []string{"--resolver-address=tcp://" + addr} },
			target: lab.Backend, stream: true},
		{name: "tls", args: func(addr string) []string {
			return []string{"--stamp=" + pinnedStamp(dnsstamps.StampProtoTypeTLS, addr, lab.BackendTLSName, lab.BackendTLSTBSHash)}
		}, target: lab.BackendDoT, stream: true},
		{name: "https", args: func(addr string) []string {
			return []string{"--stamp=" + pinnedStamp(dnsstamps.StampProtoTypeDoH, addr, lab.TLSName, lab.TLSTBSHash)}
		}, target: lab.DoHAddr, stream: true, usr1: []string{"Reconnecting to the DNS-over-HTTPS server"}},
	}
}

// pinnedStamp is labtest.PinnedStamp, which fails only for a bad hash.
func pinnedStamp(proto dnsstamps.StampProtoType, addr, tlsName, tbsHash string) string {
	s, err := labtest.PinnedStamp(proto, addr, tlsName, tbsHash)
	if err != nil {
		panic(err)
	}
	return s
}

// leakRun is one run of the binary in a leakNS.
type leakRun struct {
	kind leakKind
	// addr is the resolver's address as given on the command line;
	// resolver is the forwarder behind it (or behind the onion service
	// it names), stopped mid-run and started again.
	addr     string
	resolver *forwarder
	socks    string           // the SOCKS server behind the door
	tor      *tortest.Network // nil: the lab's microsocks (socks.log)
	args     []string         // besides --proxy=socks5://DOOR
	lab      *labtest.Lab
}

// leakEpoch is the isolation epoch of the runs: short enough that one run
// spans several.
const leakEpoch = 3 * time.Second

// TestKindsLeak runs the binary with --proxy through microsocks, with
// --tor through a private Tor network, and with --tor to onion services,
// for each upstream kind (DNSCrypt, plain TCP, DoT, DoH; DoT and DoH for the
// onion services), inside a leakNS whose only door is a forwarder to the
// SOCKS port. Over a run with the certificate or TLS handshake at start,
// every record type over UDP and TCP, bursts of queries at once, an
// isolation epoch that ends (a new identity: a new connection, and through
// Tor new credentials), the resolver dying and coming back (its
// connections close: the proxy connects again) and SIGUSR1, the namespace
// sends no packet except to the SOCKS door: no direct connection, no DNS
// lookup of the resolver's name (named through Tor by a name of lab.test,
// which the exits resolve, or by its .onion name, which Tor must get as
// such: the Tor client's stream events show the names it was asked for).
func TestKindsLeak(t *testing.T) {
	lab := sharedLab(t)
	kinds := leakKinds(lab)
	routes := []struct {
		name string
		tor  bool
	}{{"microsocks", false}, {"tor", true}}
	for _, route := range routes {
		t.Run(route.name, func(t *testing.T) {
			var tor *tortest.Network
			socks, args := lab.Socks, []string(nil)
			if route.tor {
				tor = sharedOnionTor(t)
				socks, args = tor.SOCKS, []string{"--tor"}
			}
			for _, k := range kinds {
				t.Run(k.name, func(t *testing.T) {
					res := startForwarder(t, nil, "127.0.0.1:"+strconv.Itoa(freePort(t)), k.target)
					addr := res.listen
					if route.tor { // by a name the exits resolve
						_, port, _ := net.SplitHostPort(addr)
						addr = net.JoinHostPort("resolver.lab.test", port)
					}
					kindsLeakRun(t, leakRun{kind: k, addr: addr, resolver: res, socks: socks, tor: tor, args: args, lab: lab})
				})
			}
		})
	}
	t.Run("onion", func(t *testing.T) {
		tor := sharedOnionTor(t)
		for _, k := range kinds {
			service := map[string]string{"tls": "leakdot", "https": "leakdoh"}[k.name]
			if service == "" {
				continue
			}
			t.Run(k.name, func(t *testing.T) {
				res := onionResolvers[service]
				t.Cleanup(func() { // as it was for the next test, should this one stop half-way
					if res.cmd.ProcessState != nil {
						res.Start(t)
					}
				})
				kindsLeakRun(t, leakRun{kind: k, addr: tor.OnionAddr(service), resolver: res, socks: tor.SOCKS, tor: tor,
					args: []string{"--tor"}, lab: lab})
			})
		}
	})
}

// kindsLeakRun is one run of TestKindsLeak.
func kindsLeakRun(t *testing.T, r leakRun) {
	proxyPort := freePort(t)
	ns := newLeakNS(t, leakNSConfig{ClientPorts: []int{proxyPort}})
	startForwarder(t, nil, ns.Door(), r.socks)
	var streams *streamLog
	if r.tor != nil {
		streams = watchStreams(t, r.tor)
	}
	p := startProxyCmd(t, ns.Exec, slices.Concat(r.kind.args(r.addr), r.args, []string{"--proxy=socks5://" + ns.Door(),
		labPrivate, "--isolation-epoch=" + leakEpoch.String(), "--timeout=10s", "--loglevel=7",
		fmt.Sprintf("--local-address=127.0.0.1:%d", proxyPort)})...)

	dig := func(args ...string) *digResult {
		return runDigCmd(t, ns.Exec, "dig", append(at(t, p.Addr), args...)...)
	}
	// answered asks for www.lab.test over TCP: its record, or the status.
	answered := func() (bool, string) {
		r := dig("+tcp", "+time=15", "www.lab.test", "A")
		return r.Status == "NOERROR" && r.flag("qr") && slices.Equal(r.Answer, []string{"www.lab.test.\t0\tIN\tA\t127.0.84.10"}), r.Status
	}
	waitUntil := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !cond(); time.Sleep(100 * time.Millisecond) {
			if p.exited() {
				t.Fatalf("dnscrypt-proxy exited while waiting for %s", what)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within %v", what, within)
			}
		}
	}
	waitAnswered := func(what string) {
		t.Helper()
		waitUntil(what, 90*time.Second, func() bool { ok, _ := answered(); return ok })
	}
	// connections counts the connections to the resolver so far: through
	// Tor the streams to it that succeeded, through microsocks its log.
	connections := func() int {
		if r.tor == nil {
			return socksConnects(t, r.lab, "socks.log", r.addr)
		}
		return len(proxyStreams(streams, "SUCCEEDED"))
	}

	// Start-up: the certificate, or the connection with its TLS
	// handshake, through the door.
	waitAnswered("first answer")

	// Many queries: every type over UDP and TCP, and bursts at once.
	for _, tc := range typeCases {
		for _, transport := range []string{"+notcp", "+tcp"} {
			if r := dig(append([]string{transport}, tc.args...)...); r.Status != "NOERROR" && r.Status != "NXDOMAIN" {
				t.Errorf("%s %s: %q\n%s", tc.name, transport, r.Status, r.Out)
			}
		}
	}
	if got := burstIn(t, ns.Name, p.Addr, 100); got != 100 {
		t.Errorf("burst: %d of 100 answered", got)
	}

	// An isolation epoch ends: queries of the next one take a new
	// identity, hence (but for DNSCrypt, a connection per query anyway) a
	// new connection; through Tor on a stream with new credentials. Through
	// microsocks a DNSCrypt query shows nothing of its identity: the
	// queries then go on until the epoch has turned.
	switch {
	case r.tor != nil:
		users := func() int { return len(socksUsers(proxyStreams(streams, "SUCCEEDED"))) }
		first := users()
		waitUntil("new SOCKS credentials at the end of the epoch", leakEpoch+60*time.Second, func() bool {
			answered()
			return users() > first
		})
	case r.kind.stream:
		first := connections()
		waitUntil("a new connection at the end of the epoch", leakEpoch+30*time.Second, func() bool {
			answered()
			return connections() > first
		})
	default:
		for end := time.Now().Add(leakEpoch + time.Second); time.Now().Before(end); {
			if ok, status := answered(); !ok {
				t.Errorf("across the epoch: %s", status)
			}
		}
	}

	// The resolver dies: its connections close, new ones are refused,
	// clients get SERVFAIL; it comes back: the proxy connects again.
	before := connections()
	r.resolver.Stop()
	waitUntil("SERVFAIL while the resolver is down", 60*time.Second, func() bool { _, status := answered(); return status == "SERVFAIL" })
	for range 3 {
		answered()
	}
	r.resolver.Start(t)
	waitAnswered("an answer once the resolver is back")
	if r.kind.stream && connections() <= before {
		t.Errorf("%d connections after the resolver came back, as many as before it died", connections())
	}

	// SIGUSR1: the status (nothing for one resolver) and an early check
	// of what the upstream holds (a DNSCrypt certificate, a DoH connection).
	mark := len(p.output())
	p.signal(syscall.SIGUSR1)
	for _, want := range r.kind.usr1 {
		waitUntil(fmt.Sprintf("%q after SIGUSR1", want), 30*time.Second, func() bool {
			return strings.Contains(p.output()[mark:], want)
		})
	}
	waitAnswered("an answer after SIGUSR1")
	if got := burstIn(t, ns.Name, p.Addr, 100); got != 100 {
		t.Errorf("burst after SIGUSR1: %d of 100 answered", got)
	}

	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	if n := ns.Leaks(t); n != 0 {
		t.Errorf("%d packets left the namespace outside the SOCKS door", n)
	}
	if n := ns.DoorPackets(t); n == 0 {
		t.Error("no packet went through the SOCKS door")
	}
	if r.tor != nil {
		// Tor was asked for the resolver by the name given, never for
		// anything else.
		all := proxyStreams(streams, "NEW")
		for _, e := range all {
			if target, _ := e.SplitExit(); target != r.addr {
				t.Errorf("a stream to %s, want %s: %s", target, r.addr, e.Raw)
			}
		}
		t.Logf("%d streams through Tor to %s, with %d SOCKS identities; %d connections to the resolver",
			len(all), r.addr, len(socksUsers(all)), connections())
	} else {
		t.Logf("%d connections through microsocks to %s", connections(), r.addr)
	}

	// The counter counts: one UDP packet to resolv.conf's resolver.
	inNetns(t, ns.Name, func() {
		c, err := net.Dial("udp", "192.0.2.53:53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(make([]byte, 12))
	})
	if ns.Leaks(t) == 0 {
		t.Error("control: a UDP packet to resolv.conf's address was not counted")
	}
}

// proxyStreams returns the Tor client's stream events of the given
// status from the proxy: those with SOCKS credentials (its certificate
// fetches included).
func proxyStreams(l *streamLog, status string) []tortest.StreamEvent {
	return slices.DeleteFunc(l.all(), func(e tortest.StreamEvent) bool { return e.SOCKSUser == "" || e.Status != status })
}

// socksUsers returns the SOCKS user names of events, but certificate
// fetches' (each its own "cert-" identity).
func socksUsers(events []tortest.StreamEvent) map[string]bool {
	users := map[string]bool{}
	for _, e := range events {
		if !strings.HasPrefix(e.SOCKSUser, "cert-") {
			users[e.SOCKSUser] = true
		}
	}
	return users
}

// burstIn asks the proxy at addr, from inside namespace ns, n names of
// the lab's wildcard at once over UDP, and returns how many were answered
// with their record.
func burstIn(t *testing.T, ns, addr string, n int) int {
	t.Helper()
	conns := make([]net.Conn, n)
	inNetns(t, ns, func() {
		for i := range conns {
			c, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
		}
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i, c := range conns {
		wg.Go(func() {
			defer c.Close()
			co := &dns.Conn{Conn: c}
			co.SetDeadline(time.Now().Add(30 * time.Second))
			q := msg(fmt.Sprintf("k%d.wild.lab.test", i), dns.TypeA)
			if err := co.WriteMsg(q); err != nil {
				return
			}
			r, err := co.ReadMsg()
			if err == nil && r.Id == q.Id && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ok
}
