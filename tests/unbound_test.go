package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
)

// startUnbound runs unbound as a validating cache forwarding everything to
// the proxy at forward, with lab.test's trust anchor. extra lines go into
// the server: clause.
func startUnbound(t *testing.T, trustAnchor, forward string, extra ...string) string {
	t.Helper()
	if _, err := exec.LookPath("unbound"); err != nil {
		t.Fatal("unbound is not installed (tests/lab/install.sh)")
	}
	dir := t.TempDir()
	port := freePort(t)
	host, fport, err := net.SplitHostPort(forward)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`server:
  interface: 127.0.0.1@%[1]d
  port: %[1]d
  do-ip6: no
  username: ""
  chroot: ""
  directory: "%[2]s"
  pidfile: "%[2]s/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  do-daemonize: no
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  trust-anchor-file: "%[3]s"
  val-log-level: 2
  # unbound answers the RFC 6761 name test. itself unless told not to.
  local-zone: "test." nodefault
`, port, dir, trustAnchor)
	for _, e := range extra {
		conf += "  " + e + "\n"
	}
	conf += fmt.Sprintf("forward-zone:\n  name: \".\"\n  forward-addr: %s@%s\n", host, fport)
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("unbound-checkconf", path).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s\n%s", err, out, conf)
	}
	log := &logtest.Buffer{}
	cmd := exec.Command("unbound", "-d", "-c", path)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("unbound log:\n%s", log)
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r := runDig(t, "dig", append(at(t, addr), "+time=1", "version.bind", "CH", "TXT")...); r.Status != "" {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound did not come up:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUnboundInFront: unbound validates DNSSEC through the proxy (answers
// carry AD), over UDP and over one pipelined TCP stream (tcp-upstream).
func TestUnboundInFront(t *testing.T) {
	lab := sharedLab(t)
	if lab.TrustAnchorDS == "" {
		t.Fatal("the lab's zone is not signed")
	}
	for _, mode := range []struct {
		name  string
		extra []string
	}{
		{"udp", nil},
		{"tcp-upstream", []string{"tcp-upstream: yes"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			p := startProxyBin(t, append(labArgs(lab, lab.XChaCha), "--loglevel=7")...)
			ub := startUnbound(t, lab.TrustAnchorDS, p.Addr, mode.extra...)
			for _, q := range [][]string{{"www.lab.test", "A"}, {"lab.test", "MX"}, {"_sip._tcp.lab.test", "SRV"}, {"nosuch.lab.test", "A"}} {
				r := runDig(t, "dig", append(at(t, ub), append([]string{"+dnssec"}, q...)...)...)
				if !r.flag("ad") || (r.Status != "NOERROR" && r.Status != "NXDOMAIN") {
					t.Fatalf("%v through unbound: status %s flags %v (want AD)\n%s", q, r.Status, r.Flags, r.Out)
				}
			}
			// Many names at once: unbound multiplexes them on its upstream
			// streams.
			var wg sync.WaitGroup
			errs := make(chan string, 40)
			server := at(t, ub)
			for i := range 40 {
				wg.Go(func() {
					r := runDig(t, "dig", append(slices.Clip(server), "+dnssec", fmt.Sprintf("n%d.wild.lab.test", i), "A")...)
					if !r.flag("ad") || len(r.Answer) == 0 {
						errs <- fmt.Sprintf("n%d: %s %v", i, r.Status, r.Flags)
					}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			if strings.Contains(p.output(), "Unable to get an answer") {
				t.Errorf("the proxy failed queries:\n%s", p.output())
			}
			if mode.name == "tcp-upstream" {
				// The proxy logs how many queries each inbound TCP
				// connection carried; unbound must have reused one.
				if code := p.stop(t, syscall.SIGTERM); code != 0 {
					t.Errorf("exit status %d after SIGTERM", code)
				}
				most := 0
				for _, m := range regexp.MustCompile(`TCP client connection closed.*queries=(\d+)`).FindAllStringSubmatch(p.output(), -1) {
					n, _ := strconv.Atoi(m[1])
					most = max(most, n)
				}
				if most < 2 {
					t.Fatalf("no inbound TCP connection carried more than %d queries:\n%s", most, p.output())
				}
				t.Logf("the busiest TCP connection from unbound carried %d queries", most)
			}
		})
	}
}
