package cli

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut, testEnv(), nil)
	return code, out.String(), errOut.String()
}

func TestMainHelpAndVersion(t *testing.T) {
	code, out, errOut := runMain(t, "--help")
	if code != 0 || errOut != "" {
		t.Fatalf("--help: exit %d, stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "dnscrypt-proxy "+Version+"\n\n") {
		t.Errorf("--help starts with %q", out[:min(len(out), 60)])
	}
	for _, want := range []string{
		"\n  -a\t--local-address=IP[:PORT]", "\n  -d\t--daemonize ", "\n  -p\t--pidfile=FILE", "\n    \t--pid-file=FILE",
		"\n  -X\t--plugin=", "\n    \t--tor ", "\n    \t--proxy=URL", "\n  -P\t--local-port=PORT",
		"64 digits (bare key)", "no chroot", "Exit statuses:",
		"\nUsage: dnscrypt-proxy [OPTION]... [CONFIG-FILE] [OPTION]...\n", "then the options, whose values replace the file's",
		"At most one file", "refuses to start rather than go direct",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if strings.Contains(out, "--install") {
		t.Error("--help shows a Windows-only option")
	}
	if code2, out2, _ := runMain(t, "-h"); code2 != 0 || out2 != out {
		t.Errorf("-h differs from --help")
	}

	code, out, errOut = runMain(t, "-V")
	if code != 0 || errOut != "" {
		t.Fatalf("-V: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != "dnscrypt-proxy "+Version || lines[1] != "" || !strings.HasPrefix(lines[2], "Go version: go") ||
		!strings.Contains(out, "\nFeatures: DNSCrypt es 1, es 2, DNS over TCP, DNS-over-TLS, DNS-over-HTTPS, SOCKS5/Tor\n") {
		t.Errorf("-V:\n%s", out)
	}
}

func TestMainErrors(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--bogus"}, 1, "dnscrypt-proxy: unrecognized option '--bogus'\nTry 'dnscrypt-proxy --help' for more information.\n"},
		{[]string{"-X", "libx.so"}, 2, "[ERROR] Plugins are not supported by this dnscrypt-proxy (--plugin=libx.so)\n"},
		{[]string{"-E", "-K", "/mem/key"}, 1, "[ERROR] --client-key and --ephemeral-keys are mutually exclusive\n"},
		{[]string{"-l", "/x", "-S"}, 1, "[ERROR] --logfile and --syslog are mutually exclusive\n"},
		{[]string{"-a", "bad"}, 1, "[ERROR] Unsupported local address: bad\n"},
		{[]string{"testdata/nosuch.conf"}, 1, "[ERROR] Unable to read the configuration file [testdata/nosuch.conf]"},
	} {
		code, out, errOut := runMain(t, tt.args...)
		if code != tt.code || out != "" || !strings.Contains(errOut, tt.stderr) {
			t.Errorf("%q: got exit %d stdout %q stderr %q, want exit %d stderr %q", tt.args, code, out, errOut, tt.code, tt.stderr)
		}
	}
}

func testCert(t *testing.T, notBefore, notAfter time.Time) *certs.Cert {
	t.Helper()
	return &certs.Cert{Construction: dnscrypt.XChaCha20Poly1305, Serial: 0x30303031, NotBefore: notBefore, NotAfter: notAfter}
}

func TestCheckMargin(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tt := range []struct {
		name          string
		begin, end    time.Duration // from now
		margin        time.Duration
		code          int
		out, stderr   string
		outNot, errNo string
	}{
		{"valid for long", -time.Hour, 48 * time.Hour, time.Hour, 0, "Chosen certificate '0001' is valid from", "", "", "margin"},
		{"exactly at the margin", -time.Hour, time.Hour, time.Hour, 0, "Server key fingerprint is", "", "", ""},
		{"zero margin", -time.Hour, time.Second, 0, 0, "Using version 2.0 of the DNSCrypt protocol", "", "", ""},
		{"ends within the margin", -time.Hour, 30 * time.Minute, time.Hour, 4, "", "The certificate is not valid for the given safety margin (1800000000-3600 not within [1799996400..1799998200])", "Chosen", ""},
		{"not valid yet (-I)", time.Hour, 48 * time.Hour, 0, 4, "", "not valid for the given safety margin", "", ""},
		// --test=6000: the validity period, not its start twice.
		{"margin wider than validity", -time.Hour, time.Hour, 100 * time.Hour, 4, "",
			"The certificate is not valid for the given safety margin: a margin of 360000 s is wider than the certificate validity period [1799996400..1800003600] (7200 s)", "Chosen", "[1799996400..1799996400]"},
		// 1.x accepted this one: now checked against [ts-start, ts-start].
		{"margin wider than validity, at its start", 0, time.Hour, 2 * time.Hour, 4, "", "is wider than the certificate validity period [1800000000..1800003600]", "Chosen", ""},
		{"long rotation", -time.Hour, 30 * 24 * time.Hour, 0, 0, "The key rotation period for this server may exceed the recommended value", "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, out, errOut := newTestHandler(LogSettings{MaxPriority: 6})
			c := testCert(t, now.Add(tt.begin), now.Add(tt.end))
			code := checkMargin(c, tt.margin, now, slog.New(h))
			if code != tt.code || !strings.Contains(out.String(), tt.out) || !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("got exit %d\nstdout %s\nstderr %s\nwant exit %d, %q, %q", code, out, errOut, tt.code, tt.out, tt.stderr)
			}
			if tt.outNot != "" && strings.Contains(out.String(), tt.outNot) {
				t.Errorf("stdout has %q: %s", tt.outNot, out)
			}
			if tt.errNo != "" && strings.Contains(errOut.String(), tt.errNo) {
				t.Errorf("stderr has %q: %s", tt.errNo, errOut)
			}
		})
	}
}

// TestTestSeverity: --test with several resolvers exits with the worst
// status: no valid certificate, then no answer, then the margin.
func TestTestSeverity(t *testing.T) {
	order := []int{ExitOK, ExitCertMargin, ExitCertTimeout, ExitNoCert}
	for i := 1; i < len(order); i++ {
		if testSeverity(order[i]) <= testSeverity(order[i-1]) {
			t.Errorf("exit %d must be worse than exit %d", order[i], order[i-1])
		}
	}
	for _, code := range order {
		if testResults[code] == "" {
			t.Errorf("exit %d has no name", code)
		}
	}
}

func TestTestBackoff(t *testing.T) {
	if testBackoff(1) != time.Second || testBackoff(2) != 3*time.Second {
		t.Errorf("got %v %v, want 1s 3s", testBackoff(1), testBackoff(2))
	}
}

func TestPidFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dnscrypt-proxy.pid")
	if err := writePidFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("pid file: got %q", b)
	}
	// Ours again: overwritten.
	if err := writePidFile(path); err != nil {
		t.Errorf("rewriting our own pid file: %v", err)
	}
	// A stale file naming a dead process: overwritten.
	os.WriteFile(path, []byte("999999999\n"), 0o644)
	if err := writePidFile(path); err != nil {
		t.Errorf("stale pid file: %v", err)
	}
	// Garbage: overwritten.
	os.WriteFile(path, []byte("garbage"), 0o644)
	if err := writePidFile(path); err != nil {
		t.Errorf("garbage pid file: %v", err)
	}
	// A running process of another program (PID 1 is not this test): overwritten.
	if !sameProgramRunning(os.Getpid()) {
		t.Error("sameProgramRunning(self) = false")
	}
	// (Unless PID 1 runs a program named like the test binary.)
	if !sameProgramRunning(1) {
		os.WriteFile(path, []byte("1\n"), 0o644)
		if err := writePidFile(path); err != nil {
			t.Errorf("pid file of another program: %v", err)
		}
	}

	// removePidFile removes only a file naming the given PID.
	os.WriteFile(path, []byte("12345\n"), 0o644)
	if err := removePidFile(path, 999); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Error("removePidFile removed another process's file")
	}
	if err := removePidFile(path, 12345); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("removePidFile left its file")
	}
	if err := removePidFile(path, 12345); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
	if err := writePidFile(filepath.Join(dir, "nosuch", "x.pid")); err == nil {
		t.Error("pid file in a missing directory: no error")
	}
}

func TestSdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	if err := sdNotify("READY=1\nMAINPID=42"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1\nMAINPID=42" {
		t.Errorf("got %q, %v", buf[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "none"))
	if err := sdNotify("READY=1"); err == nil {
		t.Error("missing socket: no error")
	}
}

func TestSystemdSocketsNotForUs(t *testing.T) {
	t.Setenv("LISTEN_PID", "")
	t.Setenv("LISTEN_FDS", "")
	if _, _, ok, err := systemdSockets(); ok || err != nil {
		t.Errorf("no variables: got %v %v", ok, err)
	}
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()+1))
	t.Setenv("LISTEN_FDS", "2")
	if _, _, ok, err := systemdSockets(); ok || err != nil {
		t.Errorf("another process's sockets: got %v %v", ok, err)
	}
	if os.Getenv("LISTEN_FDS") != "2" {
		t.Error("the variables of another process were removed")
	}
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("LISTEN_FDS", "x")
	if _, _, ok, err := systemdSockets(); ok || err == nil || !strings.Contains(err.Error(), "Invalid LISTEN_FDS") {
		t.Errorf("bad LISTEN_FDS: got %v %v", ok, err)
	}
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("LISTEN_FDS", "0")
	if _, _, ok, err := systemdSockets(); ok || err != nil {
		t.Errorf("no sockets: got %v %v", ok, err)
	}
}

func TestDaemonChildPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d := &daemonChild{w: w}
	d.log("[ERROR] first\nsecond")
	d.ready()
	d.ready() // idempotent
	d.log("after")
	d.close()
	var nilChild *daemonChild
	nilChild.log("x")
	nilChild.ready()
	nilChild.close()
	b := make([]byte, 100)
	n, _ := r.Read(b)
	if got, want := string(b[:n]), "LOG [ERROR] first second\nREADY\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestUserText(t *testing.T) {
	_, err := ParseClientKey([]byte("00"))
	if got := userText(err); strings.Contains(got, "cli:") || !strings.Contains(got, "unsupported client key format") {
		t.Errorf("got %q", got)
	}
}
