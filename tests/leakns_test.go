package tests

// A network namespace that counts every packet leaving it by a way other
// than the ones a test allows: the tool of the tests that prove that a
// proxy configured for Tor or SOCKS never sends anything directly.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// leakNS is a network namespace whose only way out is a veth link to the
// host, with a default route (IPv4 and IPv6) over it, so that a leak
// attempt reaches the counter instead of failing early with "network
// unreachable". nftables counts, logs (prefix LEAK, in dmesg with
// net.netfilter.nf_log_all_netns=1) and drops every packet the namespace
// sends except:
//   - loopback TCP and UDP to and from the ports of ClientPorts (the
//     clients' own traffic with the proxy),
//   - loopback TCP to and from the ports of LoopbackDoors (a SOCKS port
//     inside the namespace, such as Tor's default 127.0.0.1:9050),
//   - TCP to HostIP:DoorPort (a forwarder of a SOCKS port on the host),
//   - loopback ICMP, and the kernel's own IPv6 link housekeeping on the
//     veth (neighbour and router solicitation, multicast listener
//     reports: no process sends them, no data rides them).
//
// Any other address, port, UDP of any kind and loopback traffic (a local
// resolver included) is counted. The namespace's resolv.conf names an
// address that would be counted, so a local name lookup shows too.
type leakNS struct {
	Name     string   // the namespace
	HostIP   string   // the host end of the veth link
	DoorPort int      // TCP port of HostIP the namespace may connect to
	Exec     []string // command prefix running a program in the namespace
}

// leakNSConfig is what a leakNS lets through.
type leakNSConfig struct {
	ClientPorts   []int // ports of 127.0.0.1, TCP and UDP, both ways
	LoopbackDoors []int // TCP ports of 127.0.0.1, both ways
	DoorPort      int   // TCP port on HostIP; 0 picks a free one
}

var leakNSCount atomic.Int32

// newLeakNS creates a leakNS, removed when the test ends (with any process
// still running in it). It needs root.
func newLeakNS(t *testing.T, cfg leakNSConfig) *leakNS {
	t.Helper()
	ns := newNetns(t)
	// Processes left in the namespace would keep it alive: end them
	// first (cleanups run last-in first-out, so before newNetns's).
	t.Cleanup(func() { killInNetns(ns, "") })
	// One /30 per namespace: 10.77.X.(4k) with X from the process, k from
	// a counter, so that test binaries and tests running at the same time
	// do not collide.
	x, k := os.Getpid()%200+20, int(leakNSCount.Add(1))%60+1
	hostIP, nsIP := fmt.Sprintf("10.77.%d.%d", x, 4*k+1), fmt.Sprintf("10.77.%d.%d", x, 4*k+2)
	host6, ns6 := fmt.Sprintf("fd77:%d:%d::1", x, k), fmt.Sprintf("fd77:%d:%d::2", x, k)
	bogus := "192.0.2.53" // TEST-NET-1, routed to the counter
	vHost, vNS := fmt.Sprintf("dlk%d-%da", x, k), fmt.Sprintf("dlk%d-%db", x, k)
	run(t, "ip", "link", "add", vHost, "type", "veth", "peer", "name", vNS)
	t.Cleanup(func() { exec.Command("ip", "link", "del", vHost).Run() })
	run(t, "ip", "link", "set", vNS, "netns", ns)
	run(t, "ip", "addr", "add", hostIP+"/30", "dev", vHost)
	run(t, "ip", "-6", "addr", "add", host6+"/64", "dev", vHost, "nodad")
	run(t, "ip", "link", "set", vHost, "up")
	run(t, "ip", "-n", ns, "addr", "add", nsIP+"/30", "dev", vNS)
	run(t, "ip", "-n", ns, "-6", "addr", "add", ns6+"/64", "dev", vNS, "nodad")
	run(t, "ip", "-n", ns, "link", "set", vNS, "up")
	run(t, "ip", "-n", ns, "route", "add", "default", "via", hostIP)
	run(t, "ip", "-n", ns, "-6", "route", "add", "default", "via", host6)
	etc := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+bogus+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	l := &leakNS{Name: ns, HostIP: hostIP, DoorPort: cfg.DoorPort, Exec: []string{"ip", "netns", "exec", ns}}
	if l.DoorPort == 0 {
		l.DoorPort = freePort(t)
	}
	var rules strings.Builder
	rules.WriteString("table inet leaktest {\n  counter leaks { }\n  counter door { }\n  chain out {\n    type filter hook output priority 0; policy accept;\n")
	for _, p := range cfg.ClientPorts {
		fmt.Fprintf(&rules, "    oifname \"lo\" ip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport %d accept\n", p)
		fmt.Fprintf(&rules, "    oifname \"lo\" ip saddr 127.0.0.1 meta l4proto { tcp, udp } th sport %d accept\n", p)
	}
	for _, p := range cfg.LoopbackDoors {
		fmt.Fprintf(&rules, "    oifname \"lo\" ip daddr 127.0.0.1 tcp dport %d accept\n", p)
		fmt.Fprintf(&rules, "    oifname \"lo\" ip saddr 127.0.0.1 tcp sport %d accept\n", p)
	}
	fmt.Fprintf(&rules, `    oifname "lo" meta l4proto { icmp, ipv6-icmp } accept
    ip daddr %s tcp dport %d counter name "door" accept
    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report } accept
    counter name "leaks" log prefix "LEAK " drop
  }
}
`, hostIP, l.DoorPort)
	nft := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules.String())
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s\n%s", err, out, rules.String())
	}
	return l
}

// killInNetns kills the processes running in namespace ns, only those of
// the program exe if not "" (daemons a test started there).
func killInNetns(ns, exe string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if path, _ := os.Readlink("/proc/" + f + "/exe"); exe == "" || path == exe {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Door is the host end's allowed address, "IP:PORT".
func (l *leakNS) Door() string { return fmt.Sprintf("%s:%d", l.HostIP, l.DoorPort) }

var leakCountRE = regexp.MustCompile(`packets (\d+)`)

// Leaks returns how many packets the counter has caught so far.
func (l *leakNS) Leaks(t testing.TB) int { return l.counter(t, "leaks") }

// DoorPackets returns how many packets went out through the door so far.
func (l *leakNS) DoorPackets(t testing.TB) int { return l.counter(t, "door") }

func (l *leakNS) counter(t testing.TB, name string) int {
	t.Helper()
	out := run(t, "ip", "netns", "exec", l.Name, "nft", "list", "counter", "inet", "leaktest", name)
	m := leakCountRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no packet count in:\n%s", out)
	}
	c, _ := strconv.Atoi(m[1])
	return c
}

// forwarder is socat forwarding the TCP connections it accepts on one
// address to another, in the namespace of its command prefix. Stopped, it
// takes the connections it carries down with it: in front of a resolver,
// it is a resolver that dies (and comes back when started again).
type forwarder struct {
	prefix         []string // nil: the host
	listen, target string   // "IP:PORT"
	cmd            *exec.Cmd
}

// startForwarder starts a forwarder from listen to target and waits until
// it listens. It is stopped when the test ends.
func startForwarder(t testing.TB, prefix []string, listen, target string) *forwarder {
	t.Helper()
	f := &forwarder{prefix: slices.Clone(prefix), listen: listen, target: target}
	f.Start(t)
	t.Cleanup(f.Stop)
	return f
}

// Start starts a stopped forwarder again and waits until it listens.
func (f *forwarder) Start(t testing.TB) {
	t.Helper()
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
}

func (f *forwarder) start() error {
	host, port, found := strings.Cut(f.listen, ":")
	if !found {
		return fmt.Errorf("forwarder address %q", f.listen)
	}
	argv := append(slices.Clone(f.prefix), "socat", fmt.Sprintf("TCP-LISTEN:%s,bind=%s,reuseaddr,fork", port, host), "TCP:"+f.target)
	f.cmd = exec.Command(argv[0], argv[1:]...)
	// A process group of its own: socat forks a child per connection,
	// which Stop ends too.
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := f.cmd.Start(); err != nil {
		return err
	}
	ss := append(slices.Clone(f.prefix), "ss", "-Hltn", "src", f.listen)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if out, _ := exec.Command(ss[0], ss[1:]...).Output(); len(out) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			f.Stop()
			return fmt.Errorf("socat did not listen on %s within 10 s", f.listen)
		}
	}
}

// Stop stops the forwarder, if it runs, with the connections it carries
// (closed): connections to it are then refused.
func (f *forwarder) Stop() {
	if f.cmd != nil && f.cmd.ProcessState == nil {
		syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		f.cmd.Wait()
	}
}
