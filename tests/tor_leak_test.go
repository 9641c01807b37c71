package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTorLeak runs the proxy in Tor mode inside a network namespace whose
// only way out is a veth link to a forwarder of Tor's SOCKS port, and
// counts with nftables every packet the namespace sends anywhere else -
// other addresses, other ports, UDP of any kind, loopback traffic other
// than the clients' own with the proxy (a local resolver included), IPv4
// and IPv6 - across start-up, queries, a forced certificate refresh, SOCKS
// going down and coming back, and shutdown. The count must be zero. A
// default route sends every leak attempt to the counter instead of failing
// early with "network unreachable", and the namespace's resolv.conf points
// at an address that would be counted, so a local name lookup shows too.
// Only the kernel's own IPv6 link housekeeping on the veth (neighbour and
// router solicitation, multicast listener reports: no process sends them,
// no data rides them) is let through uncounted. Counted packets are logged
// with the prefix LEAK (dmesg, with net.netfilter.nf_log_all_netns=1).
func TestTorLeak(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	ns := newNetns(t)
	n := os.Getpid()%200 + 20
	hostIP, nsIP, bogus := fmt.Sprintf("10.77.%d.1", n), fmt.Sprintf("10.77.%d.2", n), fmt.Sprintf("10.77.%d.9", n)
	vHost, vNS := fmt.Sprintf("dlk%da", n), fmt.Sprintf("dlk%db", n)
	run(t, "ip", "link", "add", vHost, "type", "veth", "peer", "name", vNS)
	t.Cleanup(func() { exec.Command("ip", "link", "del", vHost).Run() })
	run(t, "ip", "link", "set", vNS, "netns", ns)
	run(t, "ip", "addr", "add", hostIP+"/30", "dev", vHost)
	run(t, "ip", "-6", "addr", "add", fmt.Sprintf("fd77:%d::1/64", n), "dev", vHost, "nodad")
	run(t, "ip", "link", "set", vHost, "up")
	run(t, "ip", "-n", ns, "addr", "add", nsIP+"/30", "dev", vNS)
	run(t, "ip", "-n", ns, "-6", "addr", "add", fmt.Sprintf("fd77:%d::2/64", n), "dev", vNS, "nodad")
	run(t, "ip", "-n", ns, "link", "set", vNS, "up")
	run(t, "ip", "-n", ns, "route", "add", "default", "via", hostIP)
	run(t, "ip", "-n", ns, "-6", "route", "add", "default", "via", fmt.Sprintf("fd77:%d::1", n))
	etc := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+bogus+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	socksPort := freePort(t)
	proxyPort := freePort(t)
	rules := fmt.Sprintf(`table inet leaktest {
  counter leaks { }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "lo" ip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport %[1]d accept
    oifname "lo" ip saddr 127.0.0.1 meta l4proto { tcp, udp } th sport %[1]d accept
    oifname "lo" meta l4proto { icmp, ipv6-icmp } accept
    ip daddr %[2]s tcp dport %[3]d accept
    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report } accept
    counter name "leaks" log prefix "LEAK " drop
  }
}
`, proxyPort, hostIP, socksPort)
	nft := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	leaks := func() int {
		out := run(t, "ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "leaktest", "leaks")
		m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no packet count in:\n%s", out)
		}
		c, _ := strconv.Atoi(m[1])
		return c
	}

	// The only door: a forwarder from the veth to Tor's SOCKS port.
	var socat *exec.Cmd
	socksUp := func() {
		socat = exec.Command("socat", fmt.Sprintf("TCP-LISTEN:%d,bind=%s,reuseaddr,fork", socksPort, hostIP), "TCP:"+tor.SOCKS)
		socat.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := socat.Start(); err != nil {
			t.Fatal(err)
		}
		for range 50 {
			if out, _ := exec.Command("ss", "-Hltn", "src", fmt.Sprintf("%s:%d", hostIP, socksPort)).Output(); len(out) > 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("socat did not listen")
	}
	socksDown := func() {
		socat.Process.Kill()
		socat.Wait()
	}
	socksUp()
	t.Cleanup(func() {
		if socat.ProcessState == nil {
			socksDown()
		}
	})

	inNS := []string{"ip", "netns", "exec", ns}
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
	p := startProxyCmd(t, inNS, append(append(labArgs(lab, lab.Go), "--tor", fmt.Sprintf("--proxy=socks5://%s:%d", hostIP, socksPort), labPrivate),
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

	// A forced certificate refresh.
	p.signal(syscall.SIGUSR1)
	waitLog(t, p, "Keeping certificate", 30*time.Second)

	// SOCKS goes down: SERVFAIL, and a refresh attempt fails.
	socksDown()
	waitStatus("SERVFAIL", 10*time.Second)
	p.signal(syscall.SIGUSR1)
	waitLog(t, p, "Unable to retrieve server certificates", 30*time.Second)
	dig("www.lab.test", "MX")

	// SOCKS comes back: answers again, by itself.
	socksUp()
	waitStatus("NOERROR", 30*time.Second)

	// Shutdown.
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	if c := leaks(); c != 0 {
		t.Fatalf("%d packets left the namespace outside the SOCKS connection\n%s", c, p.output())
	}

	// The counter counts: a query to the resolver of resolv.conf is caught.
	runDigCmd(t, inNS, "dig", "+time=1", "+tries=1", "example.com")
	if c := leaks(); c == 0 {
		t.Fatal("control: a DNS query to resolv.conf's address was not counted")
	}
}
