package tests

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

// The DNS-over-HTTPS upstream against the lab's real DoH servers (dnsdist,
// and unbound's own), directly, through microsocks and through the private
// Tor network, with the proxy in-process (proxy.Config) until the command
// line names DoH resolvers.

// dohServer is one of the lab's DoH servers.
type dohServer struct {
	name, addr, host, pin string
}

func dohServers(lab *labtest.Lab) []dohServer {
	return []dohServer{
		{"dnsdist", lab.DoHAddr, lab.TLSName, lab.TLSTBSHash},
		{"unbound", lab.BackendDoHAddr, lab.BackendTLSName, lab.BackendTLSTBSHash},
	}
}

// spec is the upstream.Spec of s, reached at addr (s.addr if empty).
func (s dohServer) spec(t testing.TB, addr string) upstream.Spec {
	t.Helper()
	pin, err := hex.DecodeString(s.pin)
	if err != nil || len(pin) != 32 {
		t.Fatalf("%s: bad TBS hash %q", s.name, s.pin)
	}
	return upstream.Spec{Kind: upstream.KindHTTPS, Name: s.name, Addr: cmpOr(addr, s.addr), ServerName: s.host,
		Pins: [][32]byte{[32]byte(pin)}, Path: "/dns-query"}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// inProcessProxy is a proxy.Proxy serving on 127.0.0.1 for one test.
type inProcessProxy struct {
	Addr string
	log  *logtest.Buffer
}

// startInProcess runs a proxy with cfg (lab.test a private domain, the log
// kept at debug level) on a free port of 127.0.0.1, until the test ends.
func startInProcess(t *testing.T, cfg proxy.Config) *inProcessProxy {
	t.Helper()
	ip := &inProcessProxy{log: &logtest.Buffer{}}
	cfg.Logger = slog.New(slog.NewTextHandler(ip.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.PrivateDomains = append(cfg.PrivateDomains, "lab.test")
	ready := make(chan struct{})
	cfg.OnReady = func() { close(ready) }
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			continue
		}
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	ip.Addr = pc.LocalAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return within 20 s of cancel")
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", ip.log)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve returned before ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the proxy was not ready after 20 s")
	}
	return ip
}

// failures counts the proxy's lines about failed queries.
func (ip *inProcessProxy) failures() int {
	return strings.Count(ip.log.String(), "Unable to get an answer")
}

// waitDoHAnswer asks the proxy for www.lab.test until an answer comes
// (the first query through Tor builds a circuit, then TLS and HTTP/2).
func waitDoHAnswer(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r, err := query("tcp", addr, "www.lab.test")
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer for www.lab.test from %s within %v; last: %v %v", addr, within, r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tcpConn is a TCP connection to a server, as ss sees its client end.
type tcpConn struct {
	local   string // the client's address and port
	process string // the program that holds it: the proxy's test binary, microsocks, tor
	pid     int
}

var ssUsers = regexp.MustCompile(`users:\(\("([^"]+)",pid=(\d+)`)

// connsTo lists the established TCP connections to server ("127.0.0.1:PORT")
// from this machine, with the program at the client end.
func connsTo(t testing.TB, server string) []tcpConn {
	t.Helper()
	_, port, err := net.SplitHostPort(server)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ss", "-tnpH", "state", "established", "( dport = :"+port+" )").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var conns []tcpConn
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != server {
			continue
		}
		c := tcpConn{local: f[2]}
		if m := ssUsers.FindStringSubmatch(line); m != nil {
			c.process = m[1]
			c.pid, _ = strconv.Atoi(m[2])
		}
		conns = append(conns, c)
	}
	return conns
}

// newConns returns the connections of now that were not in before.
func newConns(before, now []tcpConn) []tcpConn {
	var out []tcpConn
	for _, c := range now {
		if !slices.ContainsFunc(before, func(b tcpConn) bool { return b.local == c.local }) {
			out = append(out, c)
		}
	}
	return out
}

// oneConnection watches the connections to a server that a test opens: it
// must open exactly one, and keep it.
type oneConnection struct {
	server string
	before []tcpConn
	conn   *tcpConn
}

func watchConns(t testing.TB, server string) *oneConnection {
	return &oneConnection{server: server, before: connsTo(t, server)}
}

// check fails the test unless exactly one new connection is open, the same
// as at the last check, and returns it.
func (o *oneConnection) check(t testing.TB, when string) tcpConn {
	t.Helper()
	now := newConns(o.before, connsTo(t, o.server))
	if len(now) != 1 {
		t.Fatalf("%s: %d new connections to %s, want 1: %+v", when, len(now), o.server, now)
	}
	if o.conn == nil {
		o.conn = &now[0]
	} else if now[0].local != o.conn.local {
		t.Fatalf("%s: the connection to %s is %+v, was %+v", when, o.server, now[0], *o.conn)
	}
	return now[0]
}

// dohTypes asks the proxy at addr for every record type of typeCases, with
// dig over UDP and TCP (and kdig with kdig), and compares each answer with
// wants (the backend's); conns must show one connection after each query.
func dohTypes(t *testing.T, addr string, wants map[string]*digResult, kdig bool, conns *oneConnection) {
	t.Helper()
	tools := []string{"dig"}
	if kdig {
		tools = append(tools, "kdig")
	}
	checkTypes(t, addr, typeCases, tools, wants, func(what string) { conns.check(t, what) })
}

// TestDoHRecordTypes: every record type of the seeds' list resolves
// through the DoH upstream to dnsdist's and unbound's DoH listeners, over
// UDP and TCP from dig and kdig, and each answer equals the backend's own;
// the 13 KB answer comes whole; DNSSEC records pass. Directly and through
// microsocks; one connection to the server carries every query (ss shows
// who holds it: this process, or microsocks).
func TestDoHRecordTypes(t *testing.T) {
	lab := sharedLab(t)
	wants := backendWants(t, lab)
	for _, s := range dohServers(lab) {
		for _, route := range []string{"direct", "microsocks"} {
			t.Run(s.name+" "+route, func(t *testing.T) {
				cfg := proxy.Config{Resolvers: []upstream.Spec{s.spec(t, "")}}
				holder := "tests.test"
				if route == "microsocks" {
					cfg.SOCKS = &proxy.SOCKS{Addr: lab.Socks}
					holder = "microsocks"
				}
				conns := watchConns(t, s.addr)
				p := startInProcess(t, cfg)
				waitDoHAnswer(t, p.Addr, 10*time.Second)
				c := conns.check(t, "first answer")
				if c.process != holder {
					t.Errorf("the connection to %s is held by %q (pid %d), want %s", s.addr, c.process, c.pid, holder)
				}
				dohTypes(t, p.Addr, wants, route == "direct", conns)
				checkHuge(t, p.Addr)
				conns.check(t, "the end")
				if n := p.failures(); n != 0 {
					t.Errorf("%d failed queries", n)
				}
			})
		}
	}
}

// TestDoHUnboundInFront: a validating unbound in front of the proxy gets
// DNSSEC-validated answers (AD) through each DoH server.
func TestDoHUnboundInFront(t *testing.T) {
	lab := sharedLab(t)
	if lab.TrustAnchorDS == "" {
		t.Fatal("the lab's zone is not signed")
	}
	for _, s := range dohServers(lab) {
		t.Run(s.name, func(t *testing.T) {
			p := startInProcess(t, proxy.Config{Resolvers: []upstream.Spec{s.spec(t, "")}})
			ub := startUnbound(t, lab.TrustAnchorDS, p.Addr, "tcp-upstream: yes")
			for _, q := range [][]string{{"www.lab.test", "A"}, {"lab.test", "MX"}, {"_sip._tcp.lab.test", "SRV"},
				{"nosuch.lab.test", "A"}, {"huge.lab.test", "TXT"}} {
				r := runDig(t, "dig", append(at(t, ub), append([]string{"+dnssec", "+tcp"}, q...)...)...)
				if !r.flag("ad") || (r.Status != "NOERROR" && r.Status != "NXDOMAIN") {
					t.Errorf("%v through unbound: status %s flags %v (want AD)\n%.2000s", q, r.Status, r.Flags, r.Out)
				}
			}
			if n := p.failures(); n != 0 {
				t.Errorf("%d failed queries", n)
			}
		})
	}
}

// heldByTor fails the test unless c is held by one of n's tor processes
// named in nicks (any if none), and returns that one's nickname.
func heldByTor(t *testing.T, n *tortest.Network, c tcpConn, nicks ...string) string {
	t.Helper()
	for nick, pid := range n.Pids() {
		if pid == c.pid && c.process == "tor" && (len(nicks) == 0 || slices.Contains(nicks, nick)) {
			return nick
		}
	}
	t.Fatalf("the connection %+v is not held by tor %v of the network (%v)", c, nicks, n.Pids())
	return ""
}

// torCfg is a proxy configuration for spec through n's SOCKS port, with
// isolation per epoch (the default of --tor).
func torCfg(n *tortest.Network, spec upstream.Spec) proxy.Config {
	return proxy.Config{Resolvers: []upstream.Spec{spec},
		SOCKS: &proxy.SOCKS{Addr: n.SOCKS, Isolation: proxy.IsolationEpoch}}
}

// TestDoHTor: through the private Tor network, every record type resolves
// through dnsdist's and unbound's DoH, the 13 KB answer comes whole, and
// one Tor stream, one connection from an exit, carries every query of the
// epoch. With the server's address given by name, the name goes to Tor
// (the exit looks it up in lab.test), never resolved here.
func TestDoHTor(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	wants := backendWants(t, lab)
	for _, s := range dohServers(lab) {
		t.Run(s.name, func(t *testing.T) {
			streams := watchStreams(t, tor)
			conns := watchConns(t, s.addr)
			p := startInProcess(t, torCfg(tor, s.spec(t, "")))
			waitDoHAnswer(t, p.Addr, 60*time.Second)
			exit := heldByTor(t, tor, conns.check(t, "first answer"), "exit0", "exit1")
			t.Logf("through %s", exit)
			dohTypes(t, p.Addr, wants, false, conns)
			checkHuge(t, p.Addr)
			conns.check(t, "the end")
			if n := p.failures(); n != 0 {
				t.Errorf("%d failed queries", n)
			}
			oneStream(t, streams, s.addr)
		})
	}
	t.Run("by name", func(t *testing.T) {
		s := dohServers(lab)[0]
		streams := watchStreams(t, tor)
		conns := watchConns(t, s.addr)
		byName := strings.Replace(s.addr, "127.0.0.1", "resolver.lab.test", 1)
		p := startInProcess(t, torCfg(tor, s.spec(t, byName)))
		waitDoHAnswer(t, p.Addr, 60*time.Second)
		heldByTor(t, tor, conns.check(t, "first answer"), "exit0", "exit1")
		for _, name := range []string{"lab.test", "_sip._tcp.lab.test", "multi.lab.test"} {
			if r := runDig(t, "dig", append(at(t, p.Addr), "+tcp", name, "ANY")...); r.Status != "NOERROR" || len(r.Answer) == 0 {
				t.Errorf("%s: %s %v\n%s", name, r.Status, r.Answer, r.Out)
			}
			conns.check(t, name)
		}
		oneStream(t, streams, byName)
	})
}

// oneStream checks that the proxy opened one Tor stream to target (as it
// named it), which succeeded.
func oneStream(t *testing.T, streams *streamLog, target string) {
	t.Helper()
	ids := map[string]bool{}
	succeeded := 0
	for _, e := range streams.all() {
		if e.SOCKSUser == "" { // not the proxy's
			continue
		}
		if e.Status == "NEW" {
			ids[e.ID] = true
			if got, _ := e.SplitExit(); got != target {
				t.Errorf("the proxy asked Tor for %s, want %s: %s", got, target, e.Raw)
			}
		}
		if e.Status == "SUCCEEDED" {
			succeeded++
		}
	}
	if len(ids) != 1 || succeeded != 1 {
		t.Errorf("the proxy opened %d streams (%d succeeded), want 1", len(ids), succeeded)
	}
}

// TestDoHOnion: dnsdist's and unbound's DoH listeners published as onion
// services of a private Tor network (sharedOnionTor), reached by their .onion names through
// the proxy: every record type, the 13 KB answer whole, one connection
// (from the onion service's tor) for all the queries.
func TestDoHOnion(t *testing.T) {
	lab := sharedLab(t)
	servers := dohServers(lab)
	n := sharedOnionTor(t) // an onion service of each on port 443, by the server's name
	wants := backendWants(t, lab)
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			streams := watchStreams(t, n)
			conns := watchConns(t, s.addr)
			onion := n.OnionAddr(s.name)
			p := startInProcess(t, torCfg(n, s.spec(t, onion)))
			waitDoHAnswer(t, p.Addr, 90*time.Second)
			heldByTor(t, n, conns.check(t, "first answer"), "onion")
			dohTypes(t, p.Addr, wants, false, conns)
			checkHuge(t, p.Addr)
			conns.check(t, "the end")
			if f := p.failures(); f != 0 {
				t.Errorf("%d failed queries", f)
			}
			if !strings.Contains(p.log.String(), onion) {
				t.Errorf("the proxy's log does not name %s", onion)
			}
			oneStream(t, streams, onion)
		})
	}
}

// TestDoHTorEpochs: a new isolation epoch moves the queries to a new
// connection, on a Tor stream with new credentials and a new circuit; the
// old epoch's connection closes.
func TestDoHTorEpochs(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	s := dohServers(lab)[1]
	streams := watchStreams(t, tor)
	before := connsTo(t, s.addr)
	cfg := torCfg(tor, s.spec(t, ""))
	cfg.SOCKS.Epoch = 2 * time.Second
	p := startInProcess(t, cfg)
	waitDoHAnswer(t, p.Addr, 60*time.Second)
	first := newConns(before, connsTo(t, s.addr))
	if len(first) != 1 {
		t.Fatalf("%d new connections, want 1: %+v", len(first), first)
	}
	// Ask until the next epoch's connection replaced the first.
	deadline := time.Now().Add(30 * time.Second)
	for {
		waitDoHAnswer(t, p.Addr, 30*time.Second)
		now := newConns(before, connsTo(t, s.addr))
		if len(now) == 1 && now[0].local != first[0].local {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections %+v 30 s later, want one other than %+v", now, first[0])
		}
		time.Sleep(200 * time.Millisecond)
	}
	users, circuits := map[string]bool{}, map[string]bool{}
	for _, e := range streams.all() {
		if e.SOCKSUser != "" && e.Status == "SUCCEEDED" {
			users[e.SOCKSUser], circuits[e.CircuitID] = true, true
		}
	}
	// Two epochs at least (a third may have begun meanwhile), each on a
	// circuit of its own.
	if len(users) < 2 || len(circuits) != len(users) {
		t.Errorf("streams of %d SOCKS users on %d circuits, want 2 or more, one circuit each", len(users), len(circuits))
	}
	if n := p.failures(); n != 0 {
		t.Errorf("%d failed queries", n)
	}
}
