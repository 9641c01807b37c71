package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

// TestMain lets the test binary play the processes the program starts
// from itself: the pid file helper, and a daemon child (scripted by its
// first argument); and the program itself under systemd socket activation.
func TestMain(m *testing.M) {
	if path := os.Getenv(pidHelperEnv); path != "" {
		os.Exit(runPidFileHelper(path))
	}
	if os.Getenv(daemonEnv) != "" {
		os.Exit(fakeDaemonChild(os.Args[1:]))
	}
	if os.Getenv(systemdChildEnv) != "" {
		// A process systemd started with sockets: LISTEN_PID names it.
		os.Unsetenv(systemdChildEnv)
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// systemdChildEnv makes the test binary run Main as systemd would start
// it with LISTEN_FDS sockets.
const systemdChildEnv = "_CLI_TEST_SYSTEMD_CHILD"

// fakeDaemonChild plays a daemon child: args[0] says how it behaves;
// args[1] is a file the test creates once the parent has returned.
func fakeDaemonChild(args []string) int {
	d := openDaemonChild()
	if d == nil || len(args) < 2 {
		return 100
	}
	// runOn runs like a daemon until SIGTERM (the parent's stopChild) or
	// until the test is done with it (the file exists, or its directory
	// is gone); a minute at most, should the test binary die.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	runOn := func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			select {
			case <-term:
				return
			default:
			}
			if _, err := os.Stat(args[1]); !errors.Is(err, fs.ErrNotExist) {
				return
			}
			if _, err := os.Stat(filepath.Dir(args[1])); err != nil {
				return
			}
		}
	}
	switch args[0] {
	case "ready":
		d.log("[WARNING] a warning before ready")
		d.ready()
		runOn()
		return 0
	case "fail":
		d.log("[ERROR] Unable to bind (UDP) [127.0.0.1:53]: permission denied")
		return 7
	case "hang":
		runOn()
		return 0
	case "close":
		d.close()
		runOn()
		return 0
	}
	return 101
}

func TestDaemonize(t *testing.T) {
	old := DaemonReadyTimeout
	DaemonReadyTimeout = 2 * time.Second
	defer func() { DaemonReadyTimeout = old }()
	for _, tt := range []struct {
		mode   string
		code   int
		stderr []string
		max    time.Duration
	}{
		{"ready", 0, []string{"[WARNING] a warning before ready\n"}, 5 * time.Second},
		{"fail", 7, []string{"[ERROR] Unable to bind (UDP) [127.0.0.1:53]: permission denied\n", "the daemon exited with status 7 before it answered"}, 5 * time.Second},
		{"hang", 1, []string{"did not answer within 2s", "stopping it"}, 10 * time.Second},
		{"close", 1, []string{"stopped reporting before it answered"}, 10 * time.Second},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			var stderr bytes.Buffer
			start := time.Now()
			parentDone := filepath.Join(t.TempDir(), "parent-done")
			code := daemonize([]string{tt.mode, parentDone}, &Plan{}, &stderr)
			took := time.Since(start)
			if err := os.WriteFile(parentDone, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, stderr.String())
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr %q lacks %q", stderr.String(), s)
				}
			}
			if took > tt.max {
				t.Errorf("took %v, want at most %v", took, tt.max)
			}
		})
	}
}

// waitHelper waits for the pid file helper to end, with exit status 0.
func waitHelper(t *testing.T, h *pidFileHelper) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the helper failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the helper did not end within 10s of done")
	}
}

// helperReading returns once the pid file helper reads its pipe: it
// writes more than a pipe holds, which only a draining reader lets through.
// Whatever the helper does before it waits on the pipe is done by then.
func helperReading(t *testing.T, h *pidFileHelper) {
	t.Helper()
	h.w.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := h.w.Write(make([]byte, 4<<20)); err != nil {
		t.Fatalf("the helper does not read its pipe: %v", err)
	}
	h.w.SetWriteDeadline(time.Time{})
}

func TestPidFileHelper(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.pid")
	if err := writePidFile(path); err != nil {
		t.Fatal(err)
	}
	h, err := startPidFileHelper(path)
	if err != nil {
		t.Fatal(err)
	}
	helperReading(t, h)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the helper removed the file before done: %v", err)
	}
	h.done()
	h.done() // idempotent
	waitHelper(t, h)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the helper did not remove the pid file: %v", err)
	}

	// A file that names another process at done stays.
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err = startPidFileHelper(path)
	if err != nil {
		t.Fatal(err)
	}
	h.done()
	waitHelper(t, h)
	if b, err := os.ReadFile(path); err != nil || string(b) != "1\n" {
		t.Errorf("another process's pid file: got %q, %v, want it untouched", b, err)
	}
}

// TestDaemonizeUnderSocketActivation: with sockets from systemd,
// --daemonize does not fork (a child would not be LISTEN_PID, and the
// daemon pipe would take descriptor 3): the process serves on them.
func TestDaemonizeUnderSocketActivation(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpAddr, tcpAddr := pc.LocalAddr().String(), ln.Addr().String()
	uf, err := pc.(*net.UDPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer uf.Close()
	tf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	pc.Close()
	ln.Close()

	dir := t.TempDir()
	notify := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	logFile, pidFile := filepath.Join(dir, "log"), filepath.Join(dir, "pid")
	args := []string{"--daemonize", "--logfile=" + logFile, "--pidfile=" + pidFile,
		"--local-address=" + udpAddr, // in use: binding it would fail
		"--resolver-address=" + srv.Addr, "--provider-name=" + dnscrypttest.ProviderName,
		"--provider-key=" + certs.Fingerprint(srv.ProviderKey)}
	start := func(fds string, files ...*os.File) (*exec.Cmd, *bytes.Buffer, chan error) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.ExtraFiles = files
		cmd.Env = append(os.Environ(), systemdChildEnv+"=1", "LISTEN_FDS="+fds, "NOTIFY_SOCKET="+notify)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
		})
		return cmd, &out, done
	}
	exited := func(done chan error) error {
		select {
		case err := <-done:
			done <- err // for the cleanup
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("the process did not end within 20s")
			return nil
		}
	}
	logged := func() string {
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	cmd, out, done := start("2", uf, tf)
	notified := make(chan string, 1)
	go func() {
		buf := make([]byte, 200)
		nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := nc.Read(buf)
		notified <- fmt.Sprintf("%q, %v", buf[:n], err)
	}()
	select {
	case got := <-notified:
		if want := fmt.Sprintf("%q, <nil>", fmt.Sprintf("READY=1\nMAINPID=%d", cmd.Process.Pid)); got != want {
			cmd.Process.Kill()
			exited(done)
			t.Fatalf("sd_notify: got %s, want %s\noutput: %s", got, want, out)
		}
	case err := <-done:
		done <- err
		t.Fatalf("the process ended before it was ready: %v\noutput: %s", err, out)
	}
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != strconv.Itoa(cmd.Process.Pid)+"\n" {
		t.Errorf("pid file: got %q, %v, want the started process's PID %d", b, err, cmd.Process.Pid)
	}
	q := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
	for _, c := range []struct{ network, addr string }{{"udp", udpAddr}, {"tcp", tcpAddr}} {
		r, _, err := (&dns.Client{Net: c.network, Timeout: 10 * time.Second}).Exchange(q, c.addr)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s query to the passed socket: got %v, %v", c.network, r, err)
		}
		if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.1" {
			t.Errorf("%s query: got %v, want A 192.0.2.1", c.network, r.Answer[0])
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := exited(done); err != nil {
		t.Errorf("exit: %v\noutput: %s", err, out)
	}
	if log := logged(); !strings.Contains(log, "[NOTICE] --daemonize ignored under systemd socket activation\n") {
		t.Errorf("log lacks the note:\n%s", log)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}

	// Unusable sockets: the error, from this process.
	os.Remove(logFile)
	cmd, out, done = start("3", uf, tf, uf)
	err = exited(done)
	if code := cmd.ProcessState.ExitCode(); code != ExitFailure {
		t.Errorf("three sockets: exit %d (%v), want %d\noutput: %s", code, err, ExitFailure, out)
	}
	if log := logged(); !strings.Contains(log, "[ERROR] Wrong number of systemd sockets: 3 - should be 2\n") {
		t.Errorf("three sockets: log lacks the error:\n%s", log)
	}
}
