package tests

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// labPid returns the pid of the lab's daemon name ("dnsdist", "unbound",
// ...), from the lab's pid files.
func labPid(t *testing.T, lab *labtest.Lab, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lab.Dir, "pids", name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatalf("pid file of %s: %q", name, b)
	}
	return pid
}

// stopLab stops the lab's process name (SIGSTOP) and returns the function
// that resumes it (SIGCONT); the test's end resumes it if the test did not.
func stopLab(t *testing.T, lab *labtest.Lab, name string) (resume func()) {
	t.Helper()
	pid := labPid(t, lab, name)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}

// killWait kills the process pid (called what) with SIGKILL and waits
// until it is gone.
func killWait(t *testing.T, pid int, what string) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still runs 10 s after SIGKILL", what)
		}
	}
}

// perfResult is what dnsperf reported.
type perfResult struct {
	sent, completed, lost int
	rcodes                map[string]int
	out                   string
}

// dnsperf runs dnsperf with args against addr and parses its summary.
func dnsperf(t *testing.T, addr string, args ...string) perfResult {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	if _, err := exec.LookPath("dnsperf"); err != nil {
		labtest.Require(t, "dnsperf", err)
	}
	out, err := exec.Command("dnsperf", append([]string{"-s", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, out)
	}
	r := perfResult{rcodes: map[string]int{}, out: string(out)}
	num := func(label string) int {
		m := regexp.MustCompile(label + `\s+(\d+)`).FindStringSubmatch(r.out)
		if m == nil {
			t.Fatalf("no %q in dnsperf's output:\n%s", label, r.out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	r.sent, r.completed, r.lost = num("Queries sent:"), num("Queries completed:"), num("Queries lost:")
	if m := regexp.MustCompile(`Response codes:\s+(.*)`).FindStringSubmatch(r.out); m != nil {
		for _, f := range strings.Split(m[1], ",") {
			var name string
			var n int
			if _, err := fmt.Sscanf(strings.TrimSpace(f), "%s %d", &name, &n); err == nil {
				r.rcodes[name] = n
			}
		}
	}
	return r
}

// askWithin asks p for name/A over network and fails unless the answer
// has rcode and came within d.
func askWithin(t *testing.T, p *proxyProc, network, name string, rcode int, d time.Duration) {
	t.Helper()
	start := time.Now()
	r, err := query(network, p.Addr, name)
	took := time.Since(start)
	if err != nil || r.Rcode != rcode {
		t.Fatalf("%s %s: got %v, %v after %v; want %s", network, name, r, err, took, dns.RcodeToString[rcode])
	}
	if took > d {
		t.Fatalf("%s %s: %s after %v, want within %v", network, name, dns.RcodeToString[rcode], took, d)
	}
}

// TestTCPLockoutReal: clients holding every TCP connection the proxy
// accepts, idle or asking now and then, do not lock a new client out of
// TCP; the proxy says once that the cap was hit.
func TestTCPLockoutReal(t *testing.T) {
	lab := sharedLab(t)
	p := startProxyBin(t, append(labArgs(lab, lab.XSalsa), "--max-active-requests=16")...)
	waitAnswer(t, p, "www.lab.test")
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range 16 {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// Half of them ask a question now and then (here: now), the others
	// stay idle; dig over TCP still gets in, every time.
	for i, c := range held {
		if i%2 == 0 {
			continue
		}
		co := &dns.Conn{Conn: c}
		if err := co.WriteMsg(msg("www.lab.test", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
		if _, err := co.ReadMsg(); err != nil {
			t.Fatalf("held connection %d: %v", i, err)
		}
	}
	for range 5 {
		r := runDig(t, "dig", append(at(t, p.Addr), "+tcp", "+tries=1", "+time=2", "www.lab.test", "A")...)
		if r.Status != "NOERROR" || len(r.Answer) == 0 {
			t.Fatalf("dig +tcp with the connection cap full: %q\n%s\n%s", r.Status, r.Out, p.output())
		}
	}
	waitLog(t, p, "TCP connection limit (16) reached", 5*time.Second)
	if n := strings.Count(p.output(), "TCP connection limit"); n != 1 {
		t.Fatalf("%d log lines about the connection limit, want 1", n)
	}
}

// TestStalledResolverReal: with the resolver stopped (SIGSTOP) under 50
// queries a second, every query gets an answer (SERVFAIL), none silence;
// the log has a few lines, not one per query; when the resolver resumes,
// so do the answers.
func TestStalledResolverReal(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true})
	p := startProxyBin(t, labArgs(lab, lab.XSalsa)...)
	waitAnswer(t, p, "www.lab.test")
	resume := stopLab(t, lab, "dnsdist")
	// dnsperf waits 15 s for each answer: longer than the proxy's 10 s
	// deadline, so "lost" counts only the queries the proxy never answered.
	res := dnsperf(t, p.Addr, "-d", filepath.Join(labtest.RepoRoot(), "tests", "lab", "queries.txt"),
		"-Q", "50", "-q", "1000", "-l", "12", "-t", "15")
	if res.lost != 0 || res.completed != res.sent || res.rcodes["SERVFAIL"] == 0 {
		t.Fatalf("resolver stopped: %d sent, %d answered, %d lost, rcodes %v\n%s", res.sent, res.completed, res.lost, res.rcodes, res.out)
	}
	warnings := strings.Count(p.output(), "[WARNING]")
	if warnings > 10 {
		t.Fatalf("%d warning lines for one outage of %d queries:\n%s", warnings, res.sent, p.output())
	}
	t.Logf("resolver stopped: %d queries, rcodes %v, %d warning lines", res.sent, res.rcodes, warnings)
	resume()
	waitAnswer(t, p, "www.lab.test")
}

// TestRefusedResolverReal: a resolver whose ports refuse (dnsdist gone:
// ICMP port unreachable over UDP, RST over TCP) costs no wait: SERVFAIL at
// once, over UDP and TCP.
func TestRefusedResolverReal(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true})
	p := startProxyBin(t, append(labArgs(lab, lab.XSalsa), "--timeout=10s")...)
	waitAnswer(t, p, "www.lab.test")
	killWait(t, labPid(t, lab, "dnsdist"), "dnsdist")
	for range 3 {
		askWithin(t, p, "udp", "www.lab.test", dns.RcodeServerFailure, time.Second)
		askWithin(t, p, "tcp", "www.lab.test", dns.RcodeServerFailure, time.Second)
	}
	waitLog(t, p, "kind=refused", 5*time.Second)
}

// TestExpiredCertificateReal: once dnsdist's certificate has expired and it
// offers no other, the proxy answers SERVFAIL at once, and says why; when
// dnsdist gets a new certificate, answers come back by themselves while
// clients keep asking.
func TestExpiredCertificateReal(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true, CertTTL: 8 * time.Second})
	p := startProxyBin(t, labArgs(lab, lab.XSalsa)...)
	waitAnswer(t, p, "www.lab.test")
	// Wait for the certificate's end (its ts-end is inclusive).
	for time.Now().Unix() <= lab.CertNotAfter.Unix() {
		time.Sleep(100 * time.Millisecond)
	}
	for range 3 {
		askWithin(t, p, "udp", "www.lab.test", dns.RcodeServerFailure, time.Second)
		askWithin(t, p, "tcp", "www.lab.test", dns.RcodeServerFailure, time.Second)
	}
	waitLog(t, p, "has expired and no valid one could be retrieved", 10*time.Second)
	if _, err := lab.Rotate("-b", strconv.Itoa(lab.BindOf(lab.XSalsa))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		r, err := query("udp", p.Addr, "www.lab.test")
		if err == nil && r.Rcode == dns.RcodeSuccess {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no answer 5 s after the new certificate: %v %v\n%s", r, err, p.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("answers %v after the new certificate", time.Since(start).Round(time.Millisecond))
}

// TestNoRouteAtBootReal: a proxy started before the network, with no route
// to its resolver (connect fails with "network is unreachable"), keeps
// running and answers SERVFAIL, saying why; once the route appears, a
// client asking every 200 ms gets answers within 2 s.
func TestNoRouteAtBootReal(t *testing.T) {
	lab := sharedLab(t)
	ns := newNetns(t)
	n := os.Getpid()%200 + 20
	hostIP, nsIP := fmt.Sprintf("10.78.%d.1", n), fmt.Sprintf("10.78.%d.2", n)
	resolverIP := fmt.Sprintf("10.79.%d.1", n)
	vHost, vNS := fmt.Sprintf("drt%da", n), fmt.Sprintf("drt%db", n)
	run(t, "ip", "link", "add", vHost, "type", "veth", "peer", "name", vNS)
	t.Cleanup(func() { exec.Command("ip", "link", "del", vHost).Run() })
	run(t, "ip", "link", "set", vNS, "netns", ns)
	run(t, "ip", "addr", "add", hostIP+"/30", "dev", vHost)
	run(t, "ip", "addr", "add", resolverIP+"/32", "dev", vHost)
	run(t, "ip", "link", "set", vHost, "up")
	run(t, "ip", "-n", ns, "addr", "add", nsIP+"/30", "dev", vNS)
	run(t, "ip", "-n", ns, "link", "set", vNS, "up")

	// The resolver at resolverIP: the Go DNSCrypt server with the lab's
	// certificate configuration, forwarding to the lab's backend.
	port := strconv.Itoa(freePort(t))
	srv, err := lab.GoServerCmd(resolverIP, port)
	if errors.Is(err, labtest.ErrUnavailable) {
		labtest.Require(t, "the Go DNSCrypt server", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	proxyAddr := net.JoinHostPort(nsIP, strconv.Itoa(freePort(t)))
	p := launchProxy(t, []string{"ip", "netns", "exec", ns},
		"--local-address="+proxyAddr, "--resolver-address="+net.JoinHostPort(resolverIP, port),
		"--provider-name="+lab.ProviderName, "--provider-key="+lab.ProviderKeyColon, "--loglevel=7")
	waitLog(t, p, "SERVFAIL until the resolver's certificate arrives", 10*time.Second)
	askWithin(t, p, "udp", "www.lab.test", dns.RcodeServerFailure, time.Second)
	askWithin(t, p, "tcp", "www.lab.test", dns.RcodeServerFailure, time.Second)
	waitLog(t, p, "network is unreachable", 5*time.Second)
	// Let the certificate backoff grow while nobody asks: 1, 2, 4 s...
	for deadline := time.Now().Add(20 * time.Second); strings.Count(p.output(), "Unable to retrieve server certificates") < 4; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 4 failed certificate fetches within 20 s:\n%s", p.output())
		}
	}

	run(t, "ip", "-n", ns, "route", "add", resolverIP+"/32", "via", hostIP)
	start := time.Now()
	for {
		r, err := query("udp", p.Addr, "www.lab.test")
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			break
		}
		if p.exited() {
			t.Fatalf("the proxy exited:\n%s", p.output())
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("no answer %v after the route appeared: %v %v\n%s", time.Since(start), r, err, p.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("answers %v after the route appeared", time.Since(start).Round(time.Millisecond))
}
