package tests

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

// TestCLIDaemonPidFileUser: --daemonize --pidfile --user. The parent
// returns once the child answers; the pid file holds the child's PID;
// the child runs as the user; SIGTERM stops it and the pid file, in a
// directory only root may write, goes away.
func TestCLIDaemonPidFileUser(t *testing.T) {
	u := testUser(t, cliUserName)
	srv := dnscrypttest.NewServer(t, nil)
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o700); err != nil { // root only
		t.Fatal(err)
	}
	pidFile := filepath.Join(runDir, "dnscrypt-proxy.pid")
	logFile := filepath.Join(dir, "dnscrypt-proxy.log")
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))

	args := append([]string{"--daemonize", "--pidfile=" + pidFile, "--user=" + u.Username,
		"--local-address=" + listen, "--logfile=" + logFile}, resolverArgs(srv)...)
	code, stdout, stderr, took := runCLI(t, 30*time.Second, args...)
	logged, _ := os.ReadFile(logFile)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s\nlog:\n%s", code, stdout, stderr, logged)
	}
	pid := cliReadPid(t, pidFile)
	cliKillAtEnd(t, pid)
	t.Logf("parent returned after %v; daemon PID %d", took.Round(time.Millisecond), pid)

	// It answers as soon as the parent has returned.
	checkAnswer(t, "udp", listen, "www.example")
	checkAnswer(t, "tcp", listen, "www.example")

	st := cliProcStatus(pid)
	if st == nil {
		t.Fatalf("daemon %d not running", pid)
	}
	want := u.Uid + "\t" + u.Uid + "\t" + u.Uid + "\t" + u.Uid
	if st["Uid"] != want {
		t.Errorf("daemon Uid: got %q, want %q", st["Uid"], want)
	}
	wantGid := u.Gid + "\t" + u.Gid + "\t" + u.Gid + "\t" + u.Gid
	if st["Gid"] != wantGid {
		t.Errorf("daemon Gid: got %q, want %q", st["Gid"], wantGid)
	}
	if strings.Contains(" "+st["Groups"]+" ", " 0 ") {
		t.Errorf("daemon keeps group 0: Groups %q", st["Groups"])
	}
	if st["PPid"] == strconv.Itoa(os.Getpid()) {
		t.Errorf("daemon is a child of the test, not detached")
	}
	// A new session: it is its own session leader's member, not ours.
	if sid, _ := unix.Getsid(pid); sid == 0 || sid == cliGetsid(t) {
		t.Errorf("daemon session %d: not detached from %d", sid, cliGetsid(t))
	}

	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cliWaitGone(t, pid, 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(pidFile); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid file %s still there after the daemon stopped", pidFile)
		}
		time.Sleep(20 * time.Millisecond)
	}
	logged, _ = os.ReadFile(logFile)
	for _, want := range []string{"[NOTICE] Starting dnscrypt-proxy", "[NOTICE] Proxying from " + listen, "Stopping proxy"} {
		if !strings.Contains(string(logged), want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}
}

func cliGetsid(t *testing.T) int {
	sid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

// TestCLIWhonixLine runs the Whonix guide's line verbatim (resolver
// options added, since the test cannot reach a public resolver): TCP only,
// daemon, user, 1.0.x --local-port.
func TestCLIWhonixLine(t *testing.T) {
	u := testUser(t, cliUserName)
	srv := dnscrypttest.NewServer(t, nil)
	port := freePort(t)
	args := append([]string{"--tcp-only", "--daemonize", "--user=" + u.Username, "--local-port=" + strconv.Itoa(port)}, resolverArgs(srv)...)
	code, stdout, stderr, _ := runCLI(t, 30*time.Second, args...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if stdout != "" || stderr != "" {
		t.Errorf("the parent printed %q %q", stdout, stderr)
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	pid := cliFindProxy(t, "--local-port="+strconv.Itoa(port))
	cliKillAtEnd(t, pid)

	// UDP gets an immediate TC=1; TCP is answered.
	r, err := query("udp", listen, "www.example")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess {
		t.Errorf("UDP with --tcp-only: got %v, want an empty TC=1 answer", r)
	}
	checkAnswer(t, "tcp", listen, "www.example")
	for _, q := range srv.Queries() {
		if q.Transport != "tcp" {
			t.Errorf("upstream query over %s with --tcp-only", q.Transport)
		}
	}
	if st := cliProcStatus(pid); !strings.HasPrefix(st["Uid"], u.Uid+"\t") {
		t.Errorf("daemon Uid %q, want %s", st["Uid"], u.Uid)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	cliWaitGone(t, pid, 10*time.Second)
}

// findProxy finds the running proxy whose command line has arg.
func cliFindProxy(t *testing.T, arg string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || cliProcessGone(pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if strings.HasSuffix(args[0], "dnscrypt-proxy") && strings.Contains(string(b), "\x00"+arg+"\x00") {
			return pid
		}
	}
	t.Fatalf("no running dnscrypt-proxy with %s", arg)
	return 0
}

// TestCLIDaemonFailureReported: a daemon child that cannot bind makes the
// parent exit non-zero with the child's error, and leaves no process.
func TestCLIDaemonFailureReported(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	port := freePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pidFile := filepath.Join(t.TempDir(), "p.pid")
	code, stdout, stderr, _ := runCLI(t, 30*time.Second, append([]string{"-d", "-p", pidFile, "-a", listen}, resolverArgs(srv)...)...)
	if code != 1 || !strings.Contains(stderr, "[ERROR] Unable to bind (TCP) ["+listen+"]: address already in use") ||
		!strings.Contains(stderr, "the daemon exited with status 1 before it answered") {
		t.Errorf("got exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}
