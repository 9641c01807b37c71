package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
)

// TestCLISighupReopensLog: logrotate moves the log away and sends SIGHUP;
// the proxy writes to a new file of the same name.
func TestCLISighupReopensLog(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	logFile := filepath.Join(t.TempDir(), "dnscrypt-proxy.log")
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := launchProxy(t, nil, append([]string{"-a", listen, "-l", logFile, "-m", "7"}, resolverArgs(srv)...)...)
	waitAnswer(t, p, "ready.example")
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(logFile); err == nil && strings.Contains(string(b), "[INFO] Log file reopened") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new log file after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkAnswer(t, "tcp", listen, "after-rotation.example")
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	old, _ := os.ReadFile(logFile + ".1")
	cur, _ := os.ReadFile(logFile)
	if !strings.Contains(string(old), "[NOTICE] Starting dnscrypt-proxy") || !strings.Contains(string(old), "[NOTICE] Proxying from "+listen) ||
		strings.Contains(string(old), "Stopping proxy") {
		t.Errorf("rotated log:\n%s", old)
	}
	if !strings.Contains(string(cur), "Stopping proxy") || strings.Contains(string(cur), "Starting") {
		t.Errorf("new log:\n%s", cur)
	}
	if s := p.output(); s != "" {
		t.Errorf("stdout/stderr with --logfile: %q", s)
	}
}

// TestCLIForegroundStop: SIGTERM and SIGINT stop a foreground proxy with
// status 0 and remove its pid file.
func TestCLIForegroundStop(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "p.pid")
			listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
			p := launchProxy(t, nil, append([]string{"--pid-file=" + pidFile, "-a", listen}, resolverArgs(srv)...)...)
			waitAnswer(t, p, "ready.example")
			checkAnswer(t, "udp", listen, "www.example")
			if pid := cliReadPid(t, pidFile); pid != p.pid() {
				t.Errorf("pid file holds %d, want %d", pid, p.pid())
			}
			if code := p.stop(t, sig); code != 0 {
				t.Errorf("exit %d after %v", code, sig)
			}
			if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
				t.Errorf("pid file after exit: %v", err)
			}
			if out := p.stdout.String(); !strings.Contains(out, "Stopping proxy") || !strings.Contains(out, "TCP listener shut down") {
				t.Errorf("stdout:\n%s", out)
			}
		})
	}
}

// TestCLIPidFileOfRunningProxy: a second proxy refuses the pid file of a
// running one.
func TestCLIPidFileOfRunningProxy(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	pidFile := filepath.Join(t.TempDir(), "p.pid")
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := launchProxy(t, nil, append([]string{"-p", pidFile, "-a", listen}, resolverArgs(srv)...)...)
	waitAnswer(t, p, "ready.example")
	code, _, stderr, _ := runCLI(t, 30*time.Second, append([]string{"-p", pidFile, "-a", "127.0.0.1:" + strconv.Itoa(freePort(t))}, resolverArgs(srv)...)...)
	want := fmt.Sprintf("[ERROR] Unable to create pid file [%s]: another dnscrypt-proxy is running with PID %d", pidFile, p.pid())
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("got exit %d %q, want 1 and %q", code, stderr, want)
	}
	if pid := cliReadPid(t, pidFile); pid != p.pid() {
		t.Errorf("pid file now holds %d", pid)
	}
}

// TestCLIConfigFile runs with a 1.x configuration file as the only argument.
func TestCLIConfigFile(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	dir := t.TempDir()
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	logFile := filepath.Join(dir, "log")
	conf := fmt.Sprintf(`# dnscrypt-proxy 1.x configuration
ProviderName    %s
ProviderKey     %s
ResolverAddress %s
Daemonize no
LocalAddress %s
EphemeralKeys off
TCPOnly yes
Include extra.conf
BlockIPv6 no
`, dnscrypttest.ProviderName, certs.Fingerprint(srv.ProviderKey), srv.Addr, listen)
	os.WriteFile(filepath.Join(dir, "dnscrypt-proxy.conf"), []byte(conf), 0o644)
	os.WriteFile(filepath.Join(dir, "extra.conf"), []byte("LogFile "+logFile+"\nLogLevel 7\n"), 0o644)
	p := launchProxy(t, nil, filepath.Join(dir, "dnscrypt-proxy.conf"))
	p.Addr = listen // from the configuration file
	waitAnswer(t, p, "ready.example")
	r, err := query("udp", listen, "www.example")
	if err != nil || !r.Truncated {
		t.Errorf("UDP with TCPOnly yes: got %v, %v; want TC=1", r, err)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "Proxying from "+listen) {
		t.Errorf("log:\n%s", b)
	}

	os.WriteFile(filepath.Join(dir, "plugin.conf"), []byte("BlackList domains:/etc/blacklist.txt\n"), 0o644)
	code, _, stderr, _ := runCLI(t, 30*time.Second, filepath.Join(dir, "plugin.conf"))
	if code != 2 || !strings.Contains(stderr, "Plugins are not supported") {
		t.Errorf("plugin property: exit %d %q", code, stderr)
	}
}

// TestCLISystemdSockets: socket activation with one UDP and one TCP socket
// (the local address is ignored), and the refusal of a wrong count.
func TestCLISystemdSockets(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	port := freePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	uf, _ := pc.(*net.UDPConn).File()
	tf, _ := ln.(*net.TCPListener).File()
	pc.Close()
	ln.Close()
	defer uf.Close()
	defer tf.Close()

	notify := filepath.Join(t.TempDir(), "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// sh sets LISTEN_PID to its own PID, which exec keeps.
	shArgs := append([]string{"-c", `LISTEN_PID=$$ LISTEN_FDS=2 exec "$0" "$@"`, proxyBinary(t), "-a", "127.0.0.1:1"}, resolverArgs(srv)...)
	cmd := exec.Command("/bin/sh", shArgs...)
	cmd.ExtraFiles = []*os.File{tf, uf} // TCP as fd 3, UDP as fd 4: order does not matter
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	out := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}
	}()
	buf := make([]byte, 200)
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := nc.Read(buf)
	if want := fmt.Sprintf("READY=1\nMAINPID=%d", cmd.Process.Pid); err != nil || string(buf[:n]) != want {
		t.Fatalf("sd_notify: got %q, %v, want %q", buf[:n], err, want)
	}
	checkAnswer(t, "udp", listen, "www.example")
	checkAnswer(t, "tcp", listen, "www.example")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("exit: %v", err)
	}
	done <- nil
	n, _ = nc.Read(buf)
	if string(buf[:n]) != "STOPPING=1" {
		t.Errorf("second notification %q, want STOPPING=1", buf[:n])
	}

	// Three sockets: refused with 1.x's message.
	cmd = exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ LISTEN_FDS=3 exec "$0" "$@"`, proxyBinary(t)}, resolverArgs(srv)...)...)
	cmd.ExtraFiles = []*os.File{tf, uf, uf}
	b, err := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(b), "[ERROR] Wrong number of systemd sockets: 3 - should be 2") {
		t.Errorf("three sockets: %v\n%s", err, b)
	}
}

// TestCLIBadOptions: bad command lines exit 1 with a message (2 for
// plugins), before anything starts.
func TestCLIBadOptions(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--bogus"}, 1, "dnscrypt-proxy: unrecognized option '--bogus'\nTry 'dnscrypt-proxy --help' for more information.\n"},
		{[]string{"-a"}, 1, "option requires an argument -- 'a'"},
		{[]string{"-X", "libdcplugin_example_ldns_aaaa_blocking.so"}, 2, "[ERROR] Plugins are not supported by this dnscrypt-proxy"},
		{[]string{"--plugin=x.so,--a"}, 2, "Plugins are not supported"},
		{[]string{"-E", "-K", "/nonexistent"}, 1, "[ERROR] --client-key and --ephemeral-keys are mutually exclusive"},
		{[]string{"-l", "/tmp/x.log", "-S"}, 1, "[ERROR] --logfile and --syslog are mutually exclusive"},
		{[]string{"-N", "1.x", "-k", strings.Repeat("00", 32), "-r", "192.0.2.1"}, 1, "[ERROR] Unsupported server protocol version"},
		{[]string{"-a", "localhost:53"}, 1, "[ERROR] Unsupported local address: localhost:53"},
		{[]string{"-r", "192.0.2.1:0", "-N", "2.x", "-k", strings.Repeat("00", 32)}, 1, "[ERROR] Unsupported resolver address: 192.0.2.1:0"},
		{[]string{"-e", "65509"}, 1, "[ERROR] Invalid EDNS payload size: [65509]"},
		{[]string{"-u", "no-such-user-here"}, 1, "[ERROR] Unknown user: [no-such-user-here]"},
		{[]string{"--install"}, 1, "not supported on this platform"},
		{[]string{"--proxy=socks5://localhost:9050"}, 1, "is not an IP address"},
		{[]string{"-R", "no-such-resolver"}, 1, "No resolver named [no-such-resolver] found"},
	} {
		code, stdout, stderr, _ := runCLI(t, 30*time.Second, tt.args...)
		if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%q: got exit %d stdout %q stderr %q, want %d and %q", tt.args, code, stdout, stderr, tt.code, tt.stderr)
		}
	}
	code, stdout, _, _ := runCLI(t, 30*time.Second, "--help")
	if code != 0 || !strings.Contains(stdout, "  -a\t--local-address=IP[:PORT]") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
	code, stdout, _, _ = runCLI(t, 30*time.Second, "-V")
	if code != 0 || !strings.HasPrefix(stdout, "dnscrypt-proxy ") {
		t.Errorf("-V: exit %d\n%s", code, stdout)
	}
}
