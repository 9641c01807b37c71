package tortest

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Limits of the control port client.
const (
	controlTimeout = 30 * time.Second // one Control call, dial to last byte
	dialTimeout    = 5 * time.Second
	maxLine        = 1 << 20 // bytes in one reply line
	maxReply       = 8 << 20 // bytes in one reply
)

// Control runs one command on the client's control port and returns the
// reply. It connects, authenticates with the cookie (read afresh, as the
// client rewrites it at each start), sends cmd, reads the reply and
// disconnects.
//
// The reply is returned as its lines without the status code and separator
// ("250-", "250 ", "250+"), joined by "\n"; the lines of a data block
// ("250+key=" ... ".") follow their key line, unescaped; a final line "OK"
// is left out. So "GETINFO version" gives "version=0.4.9.11", "SETCONF
// DisableNetwork=1" gives "", and "GETINFO stream-status" gives
// "stream-status=" and one line per stream. A reply that is not 2xx is an
// error wrapping [ErrControl]; the text is then returned as well.
func (n *Network) Control(cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\r\n") {
		return "", ErrBadCommand
	}
	if n.isClosed() {
		return "", ErrClosed
	}
	c, r, err := n.dialControl()
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlTimeout))
	code, lines, err := command(c, r, cmd)
	if err != nil {
		return "", fmt.Errorf("tortest: control %q: %w", verb(cmd), err)
	}
	io.WriteString(c, "QUIT\r\n")
	if len(lines) > 0 && lines[len(lines)-1] == "OK" {
		lines = lines[:len(lines)-1]
	}
	text := strings.Join(lines, "\n")
	if code/100 != 2 {
		return text, fmt.Errorf("%w: %q: %d %s", ErrControl, verb(cmd), code, text)
	}
	return text, nil
}

// verb returns the first word of a command, to name it in errors without
// repeating its arguments (AUTHENTICATE carries a secret).
func verb(cmd string) string {
	v, _, _ := strings.Cut(strings.TrimSpace(cmd), " ")
	return v
}

// dialControl connects to the client's control port and authenticates.
func (n *Network) dialControl() (net.Conn, *bufio.Reader, error) {
	cookie, err := os.ReadFile(n.Cookie)
	if err != nil {
		return nil, nil, fmt.Errorf("tortest: control cookie: %w", err)
	}
	if len(cookie) != 32 {
		return nil, nil, fmt.Errorf("tortest: control cookie %s has %d bytes, want 32", n.Cookie, len(cookie))
	}
	c, err := net.DialTimeout("tcp", n.ControlAddr, dialTimeout)
	if err != nil {
		return nil, nil, fmt.Errorf("tortest: control port: %w", err)
	}
	c.SetDeadline(time.Now().Add(controlTimeout))
	r := bufio.NewReader(c)
	code, lines, err := command(c, r, "AUTHENTICATE "+hex.EncodeToString(cookie))
	if err == nil && code != 250 {
		err = fmt.Errorf("%w: AUTHENTICATE: %d %s", ErrControl, code, strings.Join(lines, " "))
	}
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("tortest: control port: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, r, nil
}

// command sends one command and reads its reply, skipping asynchronous
// events (6xx) that may come first.
func command(w io.Writer, r *bufio.Reader, cmd string) (int, []string, error) {
	if _, err := io.WriteString(w, cmd+"\r\n"); err != nil {
		return 0, nil, err
	}
	for {
		code, lines, err := readReply(r)
		if err != nil {
			return 0, nil, err
		}
		if code/100 != 6 {
			return code, lines, nil
		}
	}
}

// readReply reads one reply of the control protocol (tor's control-spec,
// section 2.3): lines "CCC-text" and "CCC+key=" (followed by a data block
// ending with a line "."), up to a line "CCC text", all with the same
// three-digit status code CCC. It returns the code and the lines' texts,
// the data lines after their key line with a leading ".." unescaped to
// ".". Lines may end with CRLF or LF.
func readReply(r *bufio.Reader) (int, []string, error) {
	code := -1
	var lines []string
	total := 0
	for {
		line, err := readLine(r)
		if err != nil {
			return 0, nil, err
		}
		total += len(line)
		if total > maxReply {
			return 0, nil, fmt.Errorf("%w: reply longer than %d bytes", ErrBadReply, maxReply)
		}
		if len(line) < 4 || !isDigits(line[:3]) || line[0] < '1' || line[0] > '6' {
			return 0, nil, fmt.Errorf("%w: line %q", ErrBadReply, clip(line))
		}
		c, _ := strconv.Atoi(line[:3])
		if code >= 0 && c != code {
			return 0, nil, fmt.Errorf("%w: status %d within a reply with status %d", ErrBadReply, c, code)
		}
		code = c
		text := line[4:]
		switch line[3] {
		case ' ':
			return code, append(lines, text), nil
		case '-':
			lines = append(lines, text)
		case '+':
			lines = append(lines, text)
			for {
				d, err := readLine(r)
				if err != nil {
					return 0, nil, err
				}
				total += len(d)
				if total > maxReply {
					return 0, nil, fmt.Errorf("%w: reply longer than %d bytes", ErrBadReply, maxReply)
				}
				if d == "." {
					break
				}
				d = strings.TrimPrefix(d, ".") // dot-stuffing
				lines = append(lines, d)
			}
		default:
			return 0, nil, fmt.Errorf("%w: line %q", ErrBadReply, clip(line))
		}
	}
}

// readLine reads one line of at most maxLine bytes and returns it without
// its CRLF or LF. A line must end with LF.
func readLine(r *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > maxLine+2 {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrBadReply, maxLine)
		}
		buf = append(buf, frag...)
		switch {
		case err == nil:
			buf = buf[:len(buf)-1]
			if n := len(buf); n > 0 && buf[n-1] == '\r' {
				buf = buf[:n-1]
			}
			return string(buf), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return "", fmt.Errorf("%w: connection closed in the middle of a line", ErrBadReply)
		default:
			return "", err
		}
	}
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// StreamEvent is one STREAM event of the client's control port (tor's
// control-spec, section 4.1.2): a stream changed its status. Tor 0.4.9.11
// sends, for a SOCKS stream of user "alice" to 127.0.0.1:40215 (NEW has
// circuit 0, SOURCE_ADDR and PURPOSE; later events the circuit ID, and for
// an IP target on 127.0.0.1 the exit it is pinned to):
//
//	650 STREAM 28 NEW 0 127.0.0.1:40215 SOURCE_ADDR=127.0.0.1:42072 PURPOSE=USER SOCKS_USERNAME="alice" SOCKS_PASSWORD="pw-alice" CLIENT_PROTOCOL=SOCKS5 NYM_EPOCH=0 SESSION_GROUP=-4 ISO_FIELDS=SOCKS_USERNAME,SOCKS_PASSWORD,CLIENTADDR,SESSION_GROUP,NYM_EPOCH
//	650 STREAM 28 SENTCONNECT 6 127.0.0.1.7BE3867D46FF1DB3D920ACF902BA5B180B1161B9.exit:40215 SOCKS_USERNAME="alice" SOCKS_PASSWORD="pw-alice" CLIENT_PROTOCOL=SOCKS5 ...
//	650 STREAM 28 REMAP 6 127.0.0.1.7BE3867D46FF1DB3D920ACF902BA5B180B1161B9.exit:40215 SOURCE=EXIT SOCKS_USERNAME="alice" ...
//	650 STREAM 28 SUCCEEDED 6 127.0.0.1.7BE3867D46FF1DB3D920ACF902BA5B180B1161B9.exit:40215 SOCKS_USERNAME="alice" ...
//	650 STREAM 28 CLOSED 6 127.0.0.1.7BE3867D46FF1DB3D920ACF902BA5B180B1161B9.exit:40215 REASON=DONE SOCKS_USERNAME="alice" ...
//
// Without SOCKS authentication there is no SOCKS_USERNAME or
// SOCKS_PASSWORD. More in tests/torlab/README.md.
type StreamEvent struct {
	ID        string // stream ID
	Status    string // NEW, SENTCONNECT, REMAP, SUCCEEDED, FAILED, CLOSED, DETACHED, ...
	CircuitID string // "0" while the stream is not attached to a circuit
	Target    string // as tor writes it: "127.0.0.1:40000", "localhost:40000", or "127.0.0.1.<FP>.exit:40000" once pinned to an exit

	SOCKSUser     string // SOCKS_USERNAME, "" if none
	SOCKSPassword string // SOCKS_PASSWORD, "" if none

	// Args holds every KEY=VALUE argument after the target, quoted values
	// unescaped: REASON, REMOTE_REASON, SOURCE, SOURCE_ADDR, PURPOSE,
	// SOCKS_USERNAME, SOCKS_PASSWORD, CLIENT_PROTOCOL, NYM_EPOCH,
	// SESSION_GROUP, ISO_FIELDS, ... An argument without "=" maps to "".
	Args map[string]string
	Raw  string // the event line without "650 "
}

// ParseStreamEvent parses the text of a STREAM event, with or without the
// leading "650 ": "STREAM ID STATUS CIRCUIT TARGET [KEY=VALUE ...]".
func ParseStreamEvent(line string) (StreamEvent, error) {
	raw := strings.TrimPrefix(line, "650 ")
	words, err := splitArgs(raw)
	if err != nil {
		return StreamEvent{}, err
	}
	if len(words) < 5 || words[0].key != "STREAM" || words[0].quoted {
		return StreamEvent{}, fmt.Errorf("%w: not a STREAM event: %q", ErrBadReply, clip(raw))
	}
	for _, w := range words[1:5] {
		if w.quoted || w.hasValue || w.key == "" {
			return StreamEvent{}, fmt.Errorf("%w: STREAM event fields: %q", ErrBadReply, clip(raw))
		}
	}
	e := StreamEvent{
		ID:        words[1].key,
		Status:    words[2].key,
		CircuitID: words[3].key,
		Target:    words[4].key,
		Args:      map[string]string{},
		Raw:       raw,
	}
	for _, w := range words[5:] {
		e.Args[w.key] = w.value
	}
	e.SOCKSUser = e.Args["SOCKS_USERNAME"]
	e.SOCKSPassword = e.Args["SOCKS_PASSWORD"]
	return e, nil
}

// arg is one space-separated word of an event: key, or key=value.
type arg struct {
	key, value string
	hasValue   bool
	quoted     bool // the value (or the whole word) was a quoted string
}

// splitArgs splits an event line into words at spaces. A value may be a
// quoted string with backslash escapes (\n, \t, \r, \", \\, octal \NNN and
// any other escaped character as itself), which may contain spaces.
func splitArgs(s string) ([]arg, error) {
	var out []arg
	for i := 0; i < len(s); {
		if s[i] == ' ' {
			i++
			continue
		}
		var a arg
		start := i
		for i < len(s) && s[i] != ' ' && s[i] != '=' && s[i] != '"' {
			i++
		}
		a.key = s[start:i]
		if i < len(s) && s[i] == '"' && a.key == "" {
			v, n, err := unquote(s[i:])
			if err != nil {
				return nil, err
			}
			a.key, a.quoted = v, true
			i += n
		} else if i < len(s) && s[i] == '=' {
			a.hasValue = true
			i++
			if i < len(s) && s[i] == '"' {
				v, n, err := unquote(s[i:])
				if err != nil {
					return nil, err
				}
				a.value, a.quoted = v, true
				i += n
			} else {
				start = i
				for i < len(s) && s[i] != ' ' {
					i++
				}
				a.value = s[start:i]
			}
		}
		if i < len(s) && s[i] != ' ' {
			return nil, fmt.Errorf("%w: unexpected %q at offset %d of %q", ErrBadReply, s[i], i, clip(s))
		}
		out = append(out, a)
	}
	return out, nil
}

// unquote decodes the quoted string at the start of s and returns it and
// the number of bytes it took, closing quote included.
func unquote(s string) (string, int, error) {
	if s == "" || s[0] != '"' {
		return "", 0, fmt.Errorf("%w: want a quoted string", ErrBadReply)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			i++
			if i == len(s) {
				break
			}
			switch c = s[i]; c {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v, j := 0, i
				for ; j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7'; j++ {
					v = v*8 + int(s[j]-'0')
				}
				if v > 255 {
					return "", 0, fmt.Errorf("%w: octal escape \\%s above 255", ErrBadReply, s[i:j])
				}
				b.WriteByte(byte(v))
				i = j - 1
			default:
				b.WriteByte(c)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("%w: unterminated quoted string %q", ErrBadReply, clip(s))
}

// WatchStreams subscribes to the client's STREAM events (SETEVENTS STREAM
// on a connection of its own) and returns them on a channel, in tor's
// order. Every stream opened after WatchStreams returns is reported. The
// channel is closed when ctx is done, when the network is closed, or when
// the connection ends (the client stopped). A consumer that falls behind
// delays reading, not tor; no event is dropped.
func (n *Network) WatchStreams(ctx context.Context) (<-chan StreamEvent, error) {
	if n.isClosed() {
		return nil, ErrClosed
	}
	c, r, err := n.dialControl()
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(controlTimeout))
	code, lines, err := command(c, r, "SETEVENTS STREAM")
	if err == nil && code != 250 {
		err = fmt.Errorf("%w: SETEVENTS: %d %s", ErrControl, code, strings.Join(lines, " "))
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("tortest: watching streams: %w", err)
	}
	c.SetDeadline(time.Time{})
	if !n.addWatcher(c) {
		c.Close()
		return nil, ErrClosed
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	ch := make(chan StreamEvent)
	go func() {
		defer close(ch)
		defer n.removeWatcher(c)
		defer stop()
		defer c.Close()
		for {
			code, lines, err := readReply(r)
			if err != nil {
				return
			}
			if code != 650 || len(lines) == 0 || !strings.HasPrefix(lines[0], "STREAM ") {
				continue
			}
			e, err := ParseStreamEvent(lines[0])
			if err != nil {
				continue
			}
			select {
			case ch <- e:
			case <-ctx.Done():
				return
			case <-n.done:
				return
			}
		}
	}()
	return ch, nil
}

func (n *Network) addWatcher(c net.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	if n.watchers == nil {
		n.watchers = map[net.Conn]struct{}{}
	}
	n.watchers[c] = struct{}{}
	return true
}

func (n *Network) removeWatcher(c net.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.watchers, c)
}

// SplitExit splits a target that names its exit relay, as tor rewrites an
// IP target on 127.0.0.1 it pins to an exit there ("exit enclave"), into the
// plain target and the exit's fingerprint:
// "127.0.0.1.6813...DACE.exit:44777" gives "127.0.0.1:44777" and
// "6813...DACE". Any other target is returned as it is, with "".
func (e StreamEvent) SplitExit() (target, fingerprint string) {
	i := strings.LastIndexByte(e.Target, ':')
	if i < 0 {
		return e.Target, ""
	}
	host, port := e.Target[:i], e.Target[i:]
	rest, ok := strings.CutSuffix(host, ".exit")
	if !ok {
		return e.Target, ""
	}
	j := strings.LastIndexByte(rest, '.')
	if j <= 0 {
		return e.Target, ""
	}
	fp := rest[j+1:]
	if len(fp) != 40 {
		return e.Target, ""
	}
	if _, err := hex.DecodeString(fp); err != nil {
		return e.Target, ""
	}
	return rest[:j] + port, fp
}
