package tests

import (
	"bytes"
	"fmt"
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

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// proxyBinary builds cmd/dnscrypt-proxy once per test binary.
func proxyBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dnscrypt-proxy-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "dnscrypt-proxy")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/dnscrypt-proxy")
		cmd.Dir = labtest.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proxyProc is a running dnscrypt-proxy binary.
type proxyProc struct {
	cmd  *exec.Cmd
	Addr string // 127.0.0.1:PORT, UDP and TCP
	Port int
	out  *syncBuffer // stdout and stderr
	done chan error
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

// startProxyBin runs the binary with args, listening on a free port of
// 127.0.0.1 (unless args name a local address), and waits until it logs
// that it is proxying. It is stopped with SIGTERM when the test ends.
func startProxyBin(t testing.TB, args ...string) *proxyProc {
	t.Helper()
	return startProxyCmd(t, nil, args...)
}

// startProxyCmd is startProxyBin with a command prefix (e.g. "ip", "netns",
// "exec", NAME) in front of the binary.
func startProxyCmd(t testing.TB, prefix []string, args ...string) *proxyProc {
	t.Helper()
	p := &proxyProc{out: &syncBuffer{}, done: make(chan error, 1)}
	local := false
	for _, a := range args {
		if strings.HasPrefix(a, "--local-address") || strings.HasPrefix(a, "--local-port") || a == "-a" || a == "-P" {
			local = true
		}
	}
	if !local {
		p.Port = freePort(t)
		args = append(args, "--local-address=127.0.0.1:"+strconv.Itoa(p.Port))
	}
	argv := append(append(append([]string(nil), prefix...), proxyBinary(t)), args...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("dnscrypt-proxy exited with %v\n%s", err, p.out)
		}
		if t.Failed() {
			t.Logf("dnscrypt-proxy output:\n%s", p.out)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.out.String(), "Proxying from") {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("dnscrypt-proxy exited early (%v):\n%s", err, p.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnscrypt-proxy not ready after 20 s:\n%s", p.out)
		}
	}
	if p.Port != 0 {
		p.Addr = "127.0.0.1:" + strconv.Itoa(p.Port)
	}
	return p
}

// stop sends SIGTERM and waits; a clean stop returns nil. Idempotent.
func (p *proxyProc) stop() error {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		return fmt.Errorf("did not stop within 10 s of SIGTERM")
	}
}

// signal sends sig to the process.
func (p *proxyProc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// labArgs are the 1.x options naming one of the lab's resolvers.
func labArgs(lab *labtest.Lab, addr string) []string {
	return []string{"--resolver-address=" + addr, "--provider-name=" + lab.ProviderName,
		"--provider-key=" + lab.ProviderKeyColon}
}
