package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the processes the program starts
// from itself: the pid file helper, and a daemon child (scripted by its
// first argument).
func TestMain(m *testing.M) {
	if path := os.Getenv(pidHelperEnv); path != "" {
		os.Exit(runPidFileHelper(path))
	}
	if os.Getenv(daemonEnv) != "" {
		os.Exit(fakeDaemonChild(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeDaemonChild(args []string) int {
	d := openDaemonChild()
	if d == nil || len(args) == 0 {
		return 100
	}
	switch args[0] {
	case "ready":
		d.log("[WARNING] a warning before ready")
		d.ready()
		time.Sleep(time.Second)
		return 0
	case "fail":
		d.log("[ERROR] Unable to bind (UDP) [127.0.0.1:53]: permission denied")
		return 7
	case "hang":
		time.Sleep(time.Minute)
		return 0
	case "close":
		d.close()
		time.Sleep(time.Minute)
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
			code := daemonize([]string{tt.mode}, &Plan{}, &stderr)
			took := time.Since(start)
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
