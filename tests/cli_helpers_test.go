package tests

// Helpers of the end-to-end tests of the dnscrypt-proxy binary (cli_*_test.go).

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt/dnscrypttest"
)

// resolverArgs are -r/-N/-k for the in-process resolver srv.
func cliResolverArgs(srv *dnscrypttest.Server) []string {
	return []string{"--resolver-address=" + srv.Addr, "--provider-name=" + dnscrypttest.ProviderName,
		"--provider-key=" + certs.Fingerprint(srv.ProviderKey)}
}

// runCLI runs the binary to its end, with a deadline.
func runCLI(t *testing.T, timeout time.Duration, args ...string) (code int, stdout, stderr string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, proxyBinary(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("dnscrypt-proxy %q did not end within %v\nstdout:\n%s\nstderr:\n%s", args, timeout, out.String(), errOut.String())
	}
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("dnscrypt-proxy %q: %v", args, err)
	}
	return code, out.String(), errOut.String(), took
}

// cliProc is a proxy process started by the test.
type cliProc struct {
	cmd         *exec.Cmd
	out, errOut *syncBuffer
	done        chan struct{}
}

// startCLI starts the binary and stops it (SIGKILL) at the end of the test
// if it still runs.
func startCLI(t *testing.T, args ...string) *cliProc {
	t.Helper()
	f := &cliProc{cmd: exec.Command(proxyBinary(t), args...), out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.errOut
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.cmd.Wait(); close(f.done) }()
	t.Cleanup(func() {
		f.cmd.Process.Kill()
		<-f.done
		if t.Failed() {
			t.Logf("proxy stdout:\n%s\nproxy stderr:\n%s", f.out, f.errOut)
		}
	})
	return f
}

// stop sends sig and waits for the exit status.
func (f *cliProc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	f.cmd.Process.Signal(sig)
	select {
	case <-f.done:
		return f.cmd.ProcessState.ExitCode()
	case <-time.After(15 * time.Second):
		t.Fatalf("proxy did not stop within 15 s after %v", sig)
		return -1
	}
}

// cliQuery asks addr for name/A over network ("udp" or "tcp").
func cliQuery(network, addr, name string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// cliWaitAnswers polls addr over TCP until the proxy answers, or fails.
func cliWaitAnswers(t *testing.T, addr string, f *cliProc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := cliQuery("tcp", addr, "ready.example")
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			return
		}
		if f != nil {
			select {
			case <-f.done:
				t.Fatalf("proxy exited with %d before answering", f.cmd.ProcessState.ExitCode())
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy at %s does not answer: %v %v", addr, r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cliCheckAnswer requires the Zone handler's A record for name.
func cliCheckAnswer(t *testing.T, network, addr, name string) {
	t.Helper()
	r, err := cliQuery(network, addr, name)
	if err != nil {
		t.Fatalf("%s query to %s: %v", network, addr, err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Truncated {
		t.Fatalf("%s query to %s: got %v", network, addr, r)
	}
	if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.1" {
		t.Fatalf("%s query to %s: got answer %v", network, addr, r.Answer[0])
	}
}

// cliTestUserName is the system account the --user tests switch to.
const cliTestUserName = "dnscrypt-clitest"

// requireRoot skips a test unless it runs as root, and fails it instead
// under CI=true, where root is expected.
func cliRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root, and CI=true")
	}
	t.Skip("needs root")
}

var cliUserOnce sync.Once

// testUser returns the test account, creating it (as a system user with
// no home and no shell) if missing.
func cliTestUser(t *testing.T) *user.User {
	t.Helper()
	cliRequireRoot(t)
	cliUserOnce.Do(func() {
		if _, err := user.Lookup(cliTestUserName); err == nil {
			return
		}
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", cliTestUserName).CombinedOutput()
		if err != nil {
			t.Logf("useradd: %v: %s", err, out)
		}
	})
	u, err := user.Lookup(cliTestUserName)
	if err != nil {
		t.Fatalf("test user %s: %v", cliTestUserName, err)
	}
	return u
}

// procStatus returns the fields of /proc/PID/status, nil if gone.
func cliProcStatus(pid int) map[string]string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		m[k] = strings.TrimSpace(v)
	}
	return m
}

// processGone reports whether pid has exited (a zombie counts as gone: in
// a container nothing may reap an orphan).
func cliProcessGone(pid int) bool {
	st := cliProcStatus(pid)
	return st == nil || strings.HasPrefix(st["State"], "Z")
}

// waitGone waits for pid to exit.
func cliWaitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cliProcessGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs after %v", pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readPid reads a pid file.
func cliReadPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("pid file holds %q", b)
	}
	return pid
}

// killAtEnd kills pid when the test ends, if it still runs.
func cliKillAtEnd(t *testing.T, pid int) {
	t.Cleanup(func() {
		if !cliProcessGone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}
