package cli

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
)

// fixedNow is Thursday 5 March 2026, 14:03:01 local time.
var fixedNow = time.Date(2026, 3, 5, 14, 3, 1, 0, time.Local)

func newTestHandler(s LogSettings) (*LogHandler, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	h := NewStdioLogHandler(&out, &errOut, s)
	h.core.now = func() time.Time { return fixedNow }
	return h, &out, &errOut
}

func TestPriority(t *testing.T) {
	for _, tt := range []struct {
		level slog.Level
		want  int
	}{
		{slog.LevelDebug - 4, 7},
		{slog.LevelDebug, 7},
		{slog.LevelInfo - 1, 7},
		{slog.LevelInfo, 6},
		{slog.LevelInfo + 1, 6},
		{proxy.LevelNotice, 5},
		{slog.LevelWarn, 4},
		{slog.LevelError, 3},
		{slog.LevelError + 4, 2},
		{slog.LevelError + 8, 1},
		{slog.LevelError + 100, 1},
	} {
		if got := Priority(tt.level); got != tt.want {
			t.Errorf("Priority(%v): got %d, want %d", tt.level, got, tt.want)
		}
	}
}

func TestLogFormat(t *testing.T) {
	h, out, errOut := newTestHandler(LogSettings{MaxPriority: 7})
	log := slog.New(h)
	log.Log(t.Context(), proxy.LevelNotice, "Starting dnscrypt-proxy 1.10.0")
	log.Info("Generating a new session key pair")
	log.Debug("query", "name", "example.com.", "type", "MX")
	log.Warn("Clock might be off")
	log.Error("Unable to retrieve server certificates", "err", errors.New("connection refused"))
	log.Log(t.Context(), slog.LevelError+4, "critical")

	wantOut := "Thu Mar  5 14:03:01 2026 [NOTICE] Starting dnscrypt-proxy 1.10.0\n" +
		"Thu Mar  5 14:03:01 2026 [INFO] Generating a new session key pair\n" +
		"Thu Mar  5 14:03:01 2026 [DEBUG] query name=example.com. type=MX\n"
	wantErr := "Thu Mar  5 14:03:01 2026 [WARNING] Clock might be off\n" +
		"Thu Mar  5 14:03:01 2026 [ERROR] Unable to retrieve server certificates err=\"connection refused\"\n" +
		"Thu Mar  5 14:03:01 2026 [CRITICAL] critical\n"
	if out.String() != wantOut {
		t.Errorf("stdout:\n got %q\nwant %q", out, wantOut)
	}
	if errOut.String() != wantErr {
		t.Errorf("stderr:\n got %q\nwant %q", errOut, wantErr)
	}
}

func TestLogLevels(t *testing.T) {
	for _, tt := range []struct {
		max   int
		lines int // of debug, info, notice, warn, error
	}{
		{7, 5}, {6, 4}, {5, 3}, {4, 2}, {3, 1}, {2, 0}, {0, 0},
	} {
		h, out, errOut := newTestHandler(LogSettings{MaxPriority: tt.max})
		log := slog.New(h)
		log.Debug("d")
		log.Info("i")
		log.Log(t.Context(), proxy.LevelNotice, "n")
		log.Warn("w")
		log.Error("e")
		if got := strings.Count(out.String()+errOut.String(), "\n"); got != tt.lines {
			t.Errorf("--loglevel=%d: got %d lines, want %d:\n%s%s", tt.max, got, tt.lines, out, errOut)
		}
		if h.Enabled(t.Context(), slog.LevelDebug) != (tt.max >= 7) {
			t.Errorf("--loglevel=%d: Enabled(Debug) wrong", tt.max)
		}
	}
}

func TestLogPrefixAttrsAndEscapes(t *testing.T) {
	h, out, _ := newTestHandler(LogSettings{MaxPriority: 6, Prefix: "dnscrypt"})
	log := slog.New(h).With("resolver", "192.0.2.1:443").WithGroup("cert")
	log.Info("Chosen certificate", "serial", 7, slog.Group("validity", "from", "2026-01-01"), "empty", "", "quote", `a"b`)
	log.Info("evil\nname\x00", "k\n", "v\r")
	log.Info("café ünïcode")
	want := "Thu Mar  5 14:03:01 2026 [INFO] dnscrypt Chosen certificate resolver=192.0.2.1:443 cert.serial=7 cert.validity.from=2026-01-01 cert.empty=\"\" cert.quote=\"a\\\"b\"\n" +
		"Thu Mar  5 14:03:01 2026 [INFO] dnscrypt evil\\nname\\x00 resolver=192.0.2.1:443 cert.k\\n=\"v\\r\"\n" +
		"Thu Mar  5 14:03:01 2026 [INFO] dnscrypt café ünïcode resolver=192.0.2.1:443\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out, want)
	}
}

func TestLogRateLimit(t *testing.T) {
	h, out, errOut := newTestHandler(LogSettings{MaxPriority: 6})
	now := fixedNow
	h.core.now = func() time.Time { return now }
	log := slog.New(h)
	for range 20 {
		log.Info("same")
		now = now.Add(time.Second)
	}
	if got := strings.Count(out.String(), "same"); got != logBurst+1 {
		t.Errorf("20 identical lines: got %d written, want %d", got, logBurst+1)
	}
	log.Warn("same") // another priority: another line
	if got, want := errOut.String(), "[WARNING] same\n"; !strings.HasSuffix(got, want) {
		t.Errorf("the same message at another priority: got %q, want %q", got, want)
	}
	log.Info("different")
	log.Info("same")
	if got := strings.Count(out.String(), "\n"); got != logBurst+3 {
		t.Errorf("after a different line: got %d lines, want %d", got, logBurst+3)
	}
	out.Reset()
	for range 15 {
		log.Info("again")
	}
	now = now.Add(logQuiet)
	log.Info("again")
	if got := strings.Count(out.String(), "again"); got != logBurst+2 {
		t.Errorf("after a quiet minute: got %d, want %d", got, logBurst+2)
	}
}

func TestLogFileReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dnscrypt-proxy.log")
	if err := os.WriteFile(path, []byte("old line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	h, err := OpenLogHandler(LogSettings{File: path, MaxPriority: 6}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	log := slog.New(h)
	log.Info("before rotation")
	log.Error("an error goes to the file too")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	log.Info("still in the old file")
	if err := h.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("after rotation")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(old), "old line\n") || strings.Count(string(old), "\n") != 4 ||
		!strings.Contains(string(old), "[ERROR] an error goes to the file too") || !strings.Contains(string(old), "still in the old file") {
		t.Errorf("rotated file:\n%s", old)
	}
	if strings.Count(string(cur), "\n") != 1 || !strings.Contains(string(cur), "[INFO] after rotation") {
		t.Errorf("new file:\n%s", cur)
	}
	if out.Len() != 0 || errOut.Len() != 0 {
		t.Errorf("stdio got %q %q with a log file", out.String(), errOut.String())
	}

	// A reopen that fails keeps the old file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := h.Reopen(); err == nil {
		t.Error("Reopen onto a directory: no error")
	}
	log.Info("after a failed reopen")
	if got, _ := os.ReadFile(path + ".1"); strings.Contains(string(got), "after a failed reopen") {
		t.Error("line went to the first file")
	}
	if _, err := OpenLogHandler(LogSettings{File: filepath.Join(path, "nosuchdir", "x")}, &out, &errOut); err == nil {
		t.Error("OpenLogHandler in a missing directory: no error")
	}
}

func TestLogSyslog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out, errOut bytes.Buffer
	h := NewStdioLogHandler(&out, &errOut, LogSettings{MaxPriority: 6, Prefix: "pfx"})
	dials := 0
	up := false
	h.core.sys = &syslogOutput{dial: func() (*syslog.Writer, error) {
		dials++
		if !up {
			return nil, errors.New("no syslog daemon")
		}
		return syslog.Dial("unixgram", sock, syslog.LOG_DAEMON|syslog.LOG_INFO, "dnscrypt-proxy")
	}}
	now := fixedNow
	h.core.now = func() time.Time { return now }
	log := slog.New(h)
	log.Info("lost")
	log.Info("lost too") // no new dial within syslogRetry
	if dials != 1 {
		t.Errorf("dials while syslog is down: got %d, want 1", dials)
	}
	up = true
	now = now.Add(syslogRetry)
	log.Warn("Clock might be off")
	log.Info("second")
	buf := make([]byte, 1024)
	var got []string
	for range 2 {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(buf[:n]))
	}
	// LOG_DAEMON is 3<<3: warning 24+4, info 24+6.
	if !strings.HasPrefix(got[0], "<28>") || !strings.Contains(got[0], "dnscrypt-proxy[") || !strings.HasSuffix(got[0], ": pfx Clock might be off\n") {
		t.Errorf("first syslog message: %q", got[0])
	}
	if !strings.HasPrefix(got[1], "<30>") || !strings.HasSuffix(got[1], ": pfx second\n") {
		t.Errorf("second syslog message: %q", got[1])
	}
	if out.Len() != 0 || errOut.Len() != 0 {
		t.Errorf("stdio got %q %q with syslog", out.String(), errOut.String())
	}
	if err := h.Close(); err != nil {
		t.Error(err)
	}
}

func TestLogTee(t *testing.T) {
	h, _, _ := newTestHandler(LogSettings{MaxPriority: 6})
	var teed []string
	h.setTee(func(line string) { teed = append(teed, line) })
	log := slog.New(h)
	log.Info("not teed")
	log.Warn("teed warning")
	log.Error("teed error", "err", "x")
	h.setTee(nil)
	log.Error("after")
	want := []string{"[WARNING] teed warning", "[ERROR] teed error err=x"}
	if strings.Join(teed, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", teed, want)
	}
}

// BenchmarkLogLine: one line through the handler, to stdout and to
// syslog (a local socket standing for the daemon).
func BenchmarkLogLine(b *testing.B) {
	b.Run("stdio", func(b *testing.B) {
		log := slog.New(NewStdioLogHandler(io.Discard, io.Discard, LogSettings{MaxPriority: 6, Prefix: "pfx"}))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			log.Info("Proxying from 127.0.0.1:53 to 192.0.2.1:443", "n", i)
		}
	})
	b.Run("syslog", func(b *testing.B) {
		sock := filepath.Join(b.TempDir(), "log")
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		go func() {
			buf := make([]byte, 1024)
			for {
				if _, err := conn.Read(buf); err != nil {
					return
				}
			}
		}()
		h := NewStdioLogHandler(io.Discard, io.Discard, LogSettings{MaxPriority: 6, Prefix: "pfx"})
		h.core.sys = &syslogOutput{dial: func() (*syslog.Writer, error) {
			return syslog.Dial("unixgram", sock, syslog.LOG_DAEMON|syslog.LOG_INFO, "dnscrypt-proxy")
		}}
		defer h.Close()
		log := slog.New(h)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			log.Info("Proxying from 127.0.0.1:53 to 192.0.2.1:443", "n", i)
		}
	})
}
