package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
)

// Syslog priorities (syslog(3)), which --loglevel compares against.
const (
	prioEmerg   = 0
	prioAlert   = 1
	prioCrit    = 2
	prioErr     = 3
	prioWarning = 4
	prioNotice  = 5
	prioInfo    = 6
	prioDebug   = 7
)

// Priority maps a slog level to a syslog priority: Debug 7, Info 6,
// proxy.LevelNotice 5, Warn 4, Error 3, and levels 4 and 8 above Error
// to 2 (critical) and 1 (alert).
func Priority(l slog.Level) int {
	switch {
	case l < slog.LevelInfo:
		return prioDebug
	case l < proxy.LevelNotice:
		return prioInfo
	case l < slog.LevelWarn:
		return prioNotice
	case l < slog.LevelError:
		return prioWarning
	case l < slog.LevelError+4:
		return prioErr
	case l < slog.LevelError+8:
		return prioCrit
	}
	return prioAlert
}

var prioLabels = [...]string{
	prioEmerg:   "[EMERGENCY] ",
	prioAlert:   "[ALERT] ",
	prioCrit:    "[CRITICAL] ",
	prioErr:     "[ERROR] ",
	prioWarning: "[WARNING] ",
	prioNotice:  "[NOTICE] ",
	prioInfo:    "[INFO] ",
	prioDebug:   "[DEBUG] ",
}

// Identical lines in a row beyond logBurst are dropped until logQuiet has
// passed since the last one written, as 1.x did.
const (
	logBurst = 10
	logQuiet = 60 * time.Second
)

// LogHandler is a slog.Handler that writes dnscrypt-proxy 1.x log lines:
//
//	Thu Mar  5 14:03:01 2026 [NOTICE] Starting dnscrypt-proxy 1.10.0
//
// that is strftime's "%c" local time, the level, the --syslog-prefix if
// any, and the message, followed by the record's attributes as key=value.
// Lines go to stdout (NOTICE, INFO, DEBUG) and stderr (WARNING and
// worse), to a file, or to syslog (ident dnscrypt-proxy, daemon facility,
// with the PID). Records above the --loglevel priority are dropped.
type LogHandler struct {
	core   *logCore
	attrs  string // preformatted " k=v" pairs of WithAttrs
	groups string // "g1.g2." of WithGroup
}

var _ slog.Handler = (*LogHandler)(nil)

// logCore is shared by a handler and those derived from it.
type logCore struct {
	maxPrio int
	prefix  string
	now     func() time.Time

	mu     sync.Mutex
	stdout io.Writer // stdio mode
	stderr io.Writer
	path   string   // file mode
	file   *os.File // file mode
	sys    *syslogOutput
	tee    func(line string)

	lastPrio  int    // rate limiting of identical lines (-1: none yet)
	last      string // the last message
	lastTime  time.Time
	lastBurst int
}

// NewStdioLogHandler logs to stdout and stderr.
func NewStdioLogHandler(stdout, stderr io.Writer, s LogSettings) *LogHandler {
	return &LogHandler{core: &logCore{maxPrio: s.MaxPriority, prefix: s.Prefix, now: time.Now, stdout: stdout, stderr: stderr, lastPrio: -1}}
}

// OpenLogHandler logs where s says: a file opened for appending, syslog,
// or else stdout and stderr.
func OpenLogHandler(s LogSettings, stdout, stderr io.Writer) (*LogHandler, error) {
	h := NewStdioLogHandler(stdout, stderr, s)
	switch {
	case s.File != "":
		f, err := openLogFile(s.File)
		if err != nil {
			return nil, err
		}
		h.core.path, h.core.file = s.File, f
	case s.Syslog:
		h.core.sys = &syslogOutput{dial: dialSyslog}
	}
	return h, nil
}

func openLogFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// Reopen reopens the log file, after logrotate moved it away (SIGHUP).
// If the new file cannot be opened, logging goes on to the old one.
func (h *LogHandler) Reopen() error {
	c := h.core
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file == nil {
		return nil
	}
	f, err := openLogFile(c.path)
	if err != nil {
		return err
	}
	c.file.Close()
	c.file = f
	return nil
}

// Close closes the log file or the syslog connection.
func (h *LogHandler) Close() error {
	c := h.core
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.file != nil {
		err = c.file.Close()
		c.file = nil
	}
	if c.sys != nil {
		c.sys.close()
	}
	return err
}

// setTee also passes every warning or worse line, without its time, to f
// (nil: stop), whatever the destination; the daemon's child uses it to
// tell its parent why it failed.
func (h *LogHandler) setTee(f func(line string)) {
	h.core.mu.Lock()
	h.core.tee = f
	h.core.mu.Unlock()
}

// Enabled reports whether l is within --loglevel.
func (h *LogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return Priority(l) <= h.core.maxPrio
}

// WithAttrs returns a handler adding attrs to every line.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	var b []byte
	for _, a := range attrs {
		b = appendAttr(b, h.groups, a)
	}
	h2 := *h
	h2.attrs = h.attrs + string(b)
	return &h2
}

// WithGroup returns a handler qualifying later keys with name.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = h.groups + name + "."
	return &h2
}

// Handle writes one line.
func (h *LogHandler) Handle(_ context.Context, r slog.Record) error {
	prio := Priority(r.Level)
	if prio > h.core.maxPrio {
		return nil
	}
	msg := appendEscaped(nil, r.Message)
	msg = append(msg, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		msg = appendAttr(msg, h.groups, a)
		return true
	})
	h.core.write(prio, string(msg))
	return nil
}

func (c *logCore) write(prio int, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if prio == c.lastPrio && msg == c.last {
		c.lastBurst++
		if c.lastBurst > logBurst && now.Sub(c.lastTime) < logQuiet {
			return
		}
	} else {
		c.lastPrio, c.last, c.lastBurst = prio, msg, 0
	}
	c.lastTime = now

	teed := c.tee != nil && prio <= prioWarning
	if c.file == nil && c.sys != nil {
		if teed {
			c.tee(c.text(prio, msg))
		}
		if c.prefix != "" {
			msg = c.prefix + " " + msg
		}
		c.sys.write(prio, msg, now)
		return
	}
	text := c.text(prio, msg)
	if teed {
		c.tee(text)
	}
	// ANSIC is strftime's %c in the C locale.
	line := now.AppendFormat(make([]byte, 0, len(time.ANSIC)+2+len(text)), time.ANSIC)
	line = append(append(append(line, ' '), text...), '\n')
	switch {
	case c.file != nil:
		c.file.Write(line)
	case prio <= prioWarning:
		c.stderr.Write(line)
	default:
		c.stdout.Write(line)
	}
}

// text is a line without its time: "[LEVEL] prefix message".
func (c *logCore) text(prio int, msg string) string {
	if c.prefix != "" {
		return prioLabels[prio] + c.prefix + " " + msg
	}
	return prioLabels[prio] + msg
}

// appendAttr appends " key=value", the value quoted when needed.
func appendAttr(b []byte, groups string, a slog.Attr) []byte {
	v := a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if v.Kind() == slog.KindGroup {
		g := groups
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range v.Group() {
			b = appendAttr(b, g, ga)
		}
		return b
	}
	b = append(b, ' ')
	b = appendEscaped(b, groups+a.Key)
	b = append(b, '=')
	var s string
	if v.Kind() == slog.KindTime {
		s = v.Time().Format(time.RFC3339)
	} else {
		s = v.String()
	}
	if s == "" || strings.ContainsAny(s, " \"=") || needsEscape(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// appendEscaped appends s with control characters escaped, so that no
// message (a query name at debug level, say) can forge a log line.
func appendEscaped(b []byte, s string) []byte {
	if !needsEscape(s) {
		return append(b, s...)
	}
	q := strconv.QuoteToGraphic(s)
	return append(b, q[1:len(q)-1]...)
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f || c == '\\' {
			return true
		}
	}
	return !utf8.ValidString(s)
}

// syslogOutput connects to the local syslog daemon when first needed and
// after failures, at most every syslogRetry; lines logged while it is
// unreachable are lost, as with syslog(3).
type syslogOutput struct {
	dial     func() (*syslog.Writer, error)
	w        *syslog.Writer
	lastDial time.Time
}

const syslogRetry = 10 * time.Second

func dialSyslog() (*syslog.Writer, error) {
	return syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "dnscrypt-proxy")
}

func (s *syslogOutput) write(prio int, msg string, now time.Time) {
	if s.w == nil {
		if !s.lastDial.IsZero() && now.Sub(s.lastDial) < syslogRetry {
			return
		}
		s.lastDial = now
		w, err := s.dial()
		if err != nil {
			return
		}
		s.w = w
	}
	var err error
	switch prio {
	case prioEmerg:
		err = s.w.Emerg(msg)
	case prioAlert:
		err = s.w.Alert(msg)
	case prioCrit:
		err = s.w.Crit(msg)
	case prioErr:
		err = s.w.Err(msg)
	case prioWarning:
		err = s.w.Warning(msg)
	case prioNotice:
		err = s.w.Notice(msg)
	case prioInfo:
		err = s.w.Info(msg)
	default:
		err = s.w.Debug(msg)
	}
	if err != nil {
		s.w.Close()
		s.w = nil
	}
}

func (s *syslogOutput) close() {
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
}

// logf logs a formatted message at level through l.
func logf(l *slog.Logger, level slog.Level, format string, args ...any) {
	l.Log(context.Background(), level, fmt.Sprintf(format, args...))
}
