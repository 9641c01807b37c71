package tests

// The dnscrypt-proxy binary as the end-to-end tests run it: one build per
// test binary, and one harness for the processes.

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// proxyBinary builds cmd/dnscrypt-proxy once per test binary, with the
// race detector when this test binary has it. TestMain removes it.
func proxyBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "dnscrypt-proxy-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "dnscrypt-proxy")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/dnscrypt-proxy")...)
		cmd.Dir = labtest.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// removeProxyBinary removes what proxyBinary built.
func removeProxyBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// proxyProc is a dnscrypt-proxy process started by a test.
type proxyProc struct {
	// Addr is where it listens (UDP and TCP), as its arguments say
	// (--local-address, -a, --local-port, -P); "" when they do not say (a
	// configuration file): the test then sets it.
	Addr string

	cmd            *exec.Cmd
	stdout, stderr *logtest.Buffer
	all            *logtest.Buffer // stdout and stderr as they came
	done           chan struct{}   // closed once it has exited
	stopped        bool            // the test stopped it
}

// launchProxy starts the binary with args, behind a command prefix (such as
// "ip", "netns", "exec", NAME) if not nil, and returns without waiting:
// the caller chooses how to wait for it (waitLog, waitAnswer). When the
// test ends, a process the test did not stop must still run; it is then
// stopped with SIGTERM and must exit with status 0.
func launchProxy(t testing.TB, prefix []string, args ...string) *proxyProc {
	t.Helper()
	p := &proxyProc{Addr: listenAddr(args), stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}, all: &logtest.Buffer{},
		done: make(chan struct{})}
	argv := append(append(append([]string(nil), prefix...), proxyBinary(t)), args...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = io.MultiWriter(p.stdout, p.all), io.MultiWriter(p.stderr, p.all)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.stopped {
			if p.exited() {
				t.Errorf("dnscrypt-proxy %q exited by itself with status %d", args, p.cmd.ProcessState.ExitCode())
			} else if code, err := p.terminate(syscall.SIGTERM); err != nil || code != 0 {
				t.Errorf("dnscrypt-proxy %q, stopped with SIGTERM: status %d, %v", args, code, err)
			}
		}
		if strings.Contains(p.output(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in dnscrypt-proxy")
		}
		if t.Failed() {
			t.Logf("dnscrypt-proxy %q output:\n%s", args, p.output())
		}
	})
	return p
}

// startProxyBin runs the binary with args, listening on a free port of
// 127.0.0.1 unless args name a local address, and waits until it logs that
// it is proxying.
func startProxyBin(t testing.TB, args ...string) *proxyProc {
	t.Helper()
	return startProxyCmd(t, nil, args...)
}

// startProxyCmd is startProxyBin behind a command prefix.
func startProxyCmd(t testing.TB, prefix []string, args ...string) *proxyProc {
	t.Helper()
	if listenAddr(args) == "" {
		args = append(args, "--local-address=127.0.0.1:"+strconv.Itoa(freePort(t)))
	}
	p := launchProxy(t, prefix, args...)
	waitLog(t, p, "Proxying from", 20*time.Second)
	return p
}

// listenAddr returns the address that args make the proxy listen on, or ""
// if they do not give one.
func listenAddr(args []string) string {
	var addr, port string
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case a == "-a" || a == "--local-address":
			addr = value()
		case strings.HasPrefix(a, "--local-address="):
			addr = strings.TrimPrefix(a, "--local-address=")
		case a == "-P" || a == "--local-port":
			port = value()
		case strings.HasPrefix(a, "--local-port="):
			port = strings.TrimPrefix(a, "--local-port=")
		case strings.HasPrefix(a, "-a"):
			addr = a[2:]
		case strings.HasPrefix(a, "-P"):
			port = a[2:]
		}
	}
	if addr == "" && port == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(cmp.Or(addr, "127.0.0.1"), cmp.Or(port, "53"))
}

// exited reports whether the process has exited.
func (p *proxyProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// pid returns the process ID.
func (p *proxyProc) pid() int { return p.cmd.Process.Pid }

// output returns what the process wrote to stdout and stderr so far.
func (p *proxyProc) output() string { return p.all.String() }

// signal sends sig to the process.
func (p *proxyProc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// stop sends sig, unless the process has exited already, waits for it to
// exit and returns its exit status. It fails the test if the process still
// runs 15 s later (and kills it).
func (p *proxyProc) stop(t testing.TB, sig syscall.Signal) int {
	t.Helper()
	p.stopped = true
	code, err := p.terminate(sig)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// terminate is stop without the test.
func (p *proxyProc) terminate(sig syscall.Signal) (int, error) {
	if !p.exited() {
		p.signal(sig)
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return -1, fmt.Errorf("dnscrypt-proxy did not stop within 15 s of %v", sig)
	}
}

// waitLog waits until the process has written s to stdout or stderr. It
// fails the test at once if the process exits first.
func waitLog(t testing.TB, p *proxyProc, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		exited := p.exited()
		if strings.Contains(p.output(), s) {
			return
		}
		if exited {
			t.Fatalf("dnscrypt-proxy exited with status %d before logging %q:\n%s", p.cmd.ProcessState.ExitCode(), s, p.output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnscrypt-proxy did not log %q within %v:\n%s", s, within, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAnswer waits until the proxy answers name/A with a record, over TCP
// (through SOCKS it answers SERVFAIL until its certificate has come). It
// fails the test at once if the process exits.
func waitAnswer(t testing.TB, p *proxyProc, name string) {
	t.Helper()
	const within = 60 * time.Second
	deadline := time.Now().Add(within)
	for {
		r, err := query("tcp", p.Addr, name)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return
		}
		if p.exited() {
			t.Fatalf("dnscrypt-proxy exited with status %d before answering", p.cmd.ProcessState.ExitCode())
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnscrypt-proxy at %s gave no answer for %s within %v; last: %v %v", p.Addr, name, within, r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// query asks addr for name/A over network ("udp" or "tcp").
func query(network, addr, name string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(msg(name, dns.TypeA), addr)
	return r, err
}

// freePort returns a port free on 127.0.0.1 for both UDP and TCP.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// labArgs are the 1.x options naming one of the lab's resolvers.
func labArgs(lab *labtest.Lab, addr string) []string {
	return []string{"--resolver-address=" + addr, "--provider-name=" + lab.ProviderName,
		"--provider-key=" + lab.ProviderKeyColon}
}

// resolverArgs are the 1.x options naming an in-process test resolver.
func resolverArgs(srv *dnscrypttest.Server) []string {
	return []string{"--resolver-address=" + srv.Addr, "--provider-name=" + dnscrypttest.ProviderName,
		"--provider-key=" + certs.Fingerprint(srv.ProviderKey)}
}
