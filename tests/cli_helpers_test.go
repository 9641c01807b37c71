package tests

// Helpers of the end-to-end tests of the dnscrypt-proxy binary (cli_*_test.go).

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

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

// checkAnswer requires the Zone handler's A record for name.
func checkAnswer(t *testing.T, network, addr, name string) {
	t.Helper()
	r, err := query(network, addr, name)
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

// cliUserName is the system account the --user tests switch to.
const cliUserName = "dnscrypt-clitest"

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
