package tortest

import (
	"bufio"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		code  int
		lines []string
		rest  string // what must be left unread
	}{
		{"ok", "250 OK\r\n", 250, []string{"OK"}, ""},
		{"lf only", "250 OK\n", 250, []string{"OK"}, ""},
		{"mid lines", "250-version=0.4.9.11\r\n250 OK\r\n", 250, []string{"version=0.4.9.11", "OK"}, ""},
		{"data block", "250+config-text=\r\nSocksPort 1\r\n..dot\r\n.\r\n250 OK\r\n", 250,
			[]string{"config-text=", "SocksPort 1", ".dot", "OK"}, ""},
		{"empty data block", "250+x=\r\n.\r\n250 OK\r\n", 250, []string{"x=", "OK"}, ""},
		{"error", "510 Unrecognized command \"FOO\"\r\n", 510, []string{"Unrecognized command \"FOO\""}, ""},
		{"event", "650 STREAM 1 NEW 0 a:1\r\n", 650, []string{"STREAM 1 NEW 0 a:1"}, ""},
		{"one reply of two", "250 OK\r\n650 STREAM 1 NEW 0 a:1\r\n", 250, []string{"OK"}, "650 STREAM 1 NEW 0 a:1\r\n"},
		{"empty text", "250 \r\n", 250, []string{""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tc.in))
			code, lines, err := readReply(r)
			if err != nil {
				t.Fatalf("readReply(%q): %v", tc.in, err)
			}
			if code != tc.code || !slices.Equal(lines, tc.lines) {
				t.Errorf("readReply(%q): got %d %q, want %d %q", tc.in, code, lines, tc.code, tc.lines)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tc.rest {
				t.Errorf("left unread: got %q, want %q", rest, tc.rest)
			}
		})
	}
}

func TestReadReplyBad(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"empty", "", io.EOF},
		{"short", "250\r\n", ErrBadReply},
		{"no separator", "250xOK\r\n", ErrBadReply},
		{"letters", "2a0 OK\r\n", ErrBadReply},
		{"code 0xx", "050 OK\r\n", ErrBadReply},
		{"code 7xx", "750 OK\r\n", ErrBadReply},
		{"mixed codes", "250-a\r\n251 OK\r\n", ErrBadReply},
		{"no final line", "250-a\r\n", io.EOF},
		{"cut line", "250 O", ErrBadReply},
		{"unterminated data", "250+x=\r\nabc\r\n", io.EOF},
		{"long line", "250 " + strings.Repeat("x", maxLine+1) + "\r\n", ErrBadReply},
		{"long reply", strings.Repeat("250-"+strings.Repeat("y", 1<<19)+"\n", 17) + "250 OK\n", ErrBadReply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// Events seen from tor 0.4.9.11 (TestNetwork logs them).
const (
	evNew = `650 STREAM 28 NEW 0 127.0.0.1:44777 SOURCE_ADDR=127.0.0.1:60458 PURPOSE=USER SOCKS_USERNAME="alice" ` +
		`SOCKS_PASSWORD="pw-alice" CLIENT_PROTOCOL=SOCKS5 NYM_EPOCH=0 SESSION_GROUP=-4 ` +
		`ISO_FIELDS=SOCKS_USERNAME,SOCKS_PASSWORD,CLIENTADDR,SESSION_GROUP,NYM_EPOCH`
	evSucceeded = `STREAM 28 SUCCEEDED 6 127.0.0.1.6813593B8749515DAB5EF064816932D61530DACE.exit:44777 ` +
		`SOCKS_USERNAME="alice" SOCKS_PASSWORD="pw-alice" CLIENT_PROTOCOL=SOCKS5 NYM_EPOCH=0 SESSION_GROUP=-4 ` +
		`ISO_FIELDS=SOCKS_USERNAME,SOCKS_PASSWORD,CLIENTADDR,SESSION_GROUP,NYM_EPOCH`
)

func TestParseStreamEvent(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want StreamEvent
	}{
		{"new", evNew, StreamEvent{
			ID: "28", Status: "NEW", CircuitID: "0", Target: "127.0.0.1:44777",
			SOCKSUser: "alice", SOCKSPassword: "pw-alice",
			Args: map[string]string{
				"SOURCE_ADDR": "127.0.0.1:60458", "PURPOSE": "USER", "SOCKS_USERNAME": "alice",
				"SOCKS_PASSWORD": "pw-alice", "CLIENT_PROTOCOL": "SOCKS5", "NYM_EPOCH": "0", "SESSION_GROUP": "-4",
				"ISO_FIELDS": "SOCKS_USERNAME,SOCKS_PASSWORD,CLIENTADDR,SESSION_GROUP,NYM_EPOCH",
			},
			Raw: strings.TrimPrefix(evNew, "650 "),
		}},
		{"succeeded", evSucceeded, StreamEvent{
			ID: "28", Status: "SUCCEEDED", CircuitID: "6",
			Target:    "127.0.0.1.6813593B8749515DAB5EF064816932D61530DACE.exit:44777",
			SOCKSUser: "alice", SOCKSPassword: "pw-alice",
			Args: map[string]string{
				"SOCKS_USERNAME": "alice", "SOCKS_PASSWORD": "pw-alice", "CLIENT_PROTOCOL": "SOCKS5",
				"NYM_EPOCH": "0", "SESSION_GROUP": "-4",
				"ISO_FIELDS": "SOCKS_USERNAME,SOCKS_PASSWORD,CLIENTADDR,SESSION_GROUP,NYM_EPOCH",
			},
			Raw: evSucceeded,
		}},
		{"no auth, closed", "STREAM 31 CLOSED 9 localhost:53 REASON=DONE", StreamEvent{
			ID: "31", Status: "CLOSED", CircuitID: "9", Target: "localhost:53",
			Args: map[string]string{"REASON": "DONE"},
			Raw:  "STREAM 31 CLOSED 9 localhost:53 REASON=DONE",
		}},
		{"escapes and flag", `STREAM 1 FAILED 0 a:1 SOCKS_USERNAME="a \"b\"\\c\n\101\0" FLAG  X=`, StreamEvent{
			ID: "1", Status: "FAILED", CircuitID: "0", Target: "a:1",
			SOCKSUser: "a \"b\"\\c\nA\x00",
			Args:      map[string]string{"SOCKS_USERNAME": "a \"b\"\\c\nA\x00", "FLAG": "", "X": ""},
			Raw:       `STREAM 1 FAILED 0 a:1 SOCKS_USERNAME="a \"b\"\\c\n\101\0" FLAG  X=`,
		}},
		{"empty username", `STREAM 2 NEW 0 a:1 SOCKS_USERNAME="" SOCKS_PASSWORD="p"`, StreamEvent{
			ID: "2", Status: "NEW", CircuitID: "0", Target: "a:1", SOCKSPassword: "p",
			Args: map[string]string{"SOCKS_USERNAME": "", "SOCKS_PASSWORD": "p"},
			Raw:  `STREAM 2 NEW 0 a:1 SOCKS_USERNAME="" SOCKS_PASSWORD="p"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStreamEvent(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !equalEvents(got, tc.want) {
				t.Errorf("got %+v,\nwant %+v", got, tc.want)
			}
		})
	}
}

func equalEvents(a, b StreamEvent) bool {
	return a.ID == b.ID && a.Status == b.Status && a.CircuitID == b.CircuitID && a.Target == b.Target &&
		a.SOCKSUser == b.SOCKSUser && a.SOCKSPassword == b.SOCKSPassword && a.Raw == b.Raw &&
		maps.Equal(a.Args, b.Args)
}

func TestParseStreamEventBad(t *testing.T) {
	for _, in := range []string{
		"",
		"STREAM",
		"STREAM 1 NEW 0",
		"CIRC 1 BUILT $AB~x",
		`"STREAM" 1 NEW 0 a:1`,
		`STREAM "1" NEW 0 a:1`,
		`STREAM 1 NEW CIRC=0 a:1`,
		`STREAM 1 NEW 0 a:1 X="unterminated`,
		`STREAM 1 NEW 0 a:1 X="a"b`,
		`STREAM 1 NEW 0 a:1 X="\400"`,
		`STREAM 1 NEW 0 a:1 X="a\`,
		`STREAM 1 NEW 0 a"b:1`,
	} {
		if e, err := ParseStreamEvent(in); !errors.Is(err, ErrBadReply) {
			t.Errorf("ParseStreamEvent(%q): got %+v, %v, want ErrBadReply", in, e, err)
		}
	}
}

func TestSplitExit(t *testing.T) {
	for _, tc := range []struct{ in, target, exit string }{
		{"127.0.0.1.6813593B8749515DAB5EF064816932D61530DACE.exit:44777", "127.0.0.1:44777", "6813593B8749515DAB5EF064816932D61530DACE"},
		{"localhost.6813593b8749515dab5ef064816932d61530dace.exit:53", "localhost:53", "6813593b8749515dab5ef064816932d61530dace"},
		{"127.0.0.1:44777", "127.0.0.1:44777", ""},
		{"exit0.exit:80", "exit0.exit:80", ""},
		{"x.6813593B8749515DAB5EF064816932D61530DACZ.exit:1", "x.6813593B8749515DAB5EF064816932D61530DACZ.exit:1", ""},
		{"6813593B8749515DAB5EF064816932D61530DACE.exit:1", "6813593B8749515DAB5EF064816932D61530DACE.exit:1", ""},
		{"[::1]:53", "[::1]:53", ""},
		{"nonsense", "nonsense", ""},
	} {
		e := StreamEvent{Target: tc.in}
		target, exit := e.SplitExit()
		if target != tc.target || exit != tc.exit {
			t.Errorf("SplitExit(%q): got %q, %q, want %q, %q", tc.in, target, exit, tc.target, tc.exit)
		}
	}
}

func TestOptionsEnv(t *testing.T) {
	bad := []Options{
		{PortBase: -1},
		{PortBase: 65400},
		{Middles: -1},
		{Exits: -2},
		{Exits: 17},
		{Middles: 10, Exits: 8},
		{Timeout: -1},
		{ExitDNS: "127.0.0.1"},
		{ExitDNS: "10.0.0.1:53"},
		{ExitDNS: "[::1]:53"},
		{ExitDNS: "127.0.0.1:0"},
		{ClientTorrc: []string{"SocksPort 1\nControlPort 2"}},
		{RelayTorrc: []string{"ExitPolicy accept *:*\r"}},
		{OnionServices: []OnionService{{Name: "Dot", Port: 853, Target: "127.0.0.1:853"}}},
		{OnionServices: []OnionService{{Name: "", Port: 853, Target: "127.0.0.1:853"}}},
		{OnionServices: []OnionService{{Name: "dot x", Port: 853, Target: "127.0.0.1:853"}}},
		{OnionServices: []OnionService{{Name: strings.Repeat("a", 33), Port: 853, Target: "127.0.0.1:853"}}},
		{OnionServices: []OnionService{{Name: "dot", Port: 0, Target: "127.0.0.1:853"}}},
		{OnionServices: []OnionService{{Name: "dot", Port: 65536, Target: "127.0.0.1:853"}}},
		{OnionServices: []OnionService{{Name: "dot", Port: 853, Target: "10.0.0.1:853"}}},
		{OnionServices: []OnionService{{Name: "dot", Port: 853, Target: "127.0.0.1"}}},
		{OnionServices: []OnionService{{Name: "dot", Port: 853, Target: "127.0.0.1:0"}}},
		{OnionServices: []OnionService{{Name: "dot", Port: 853, Target: "localhost:853"}}},
		{OnionServices: []OnionService{{Name: "dot", Port: 853, Target: "127.0.0.1:853"}, {Name: "dot", Port: 443, Target: "127.0.0.1:443"}}},
	}
	for _, o := range bad {
		if _, _, err := o.env(); err == nil {
			t.Errorf("%+v: got no error", o)
		}
	}
	timeout, env, err := Options{
		Exits: 3, ExitDNS: "127.0.0.2:5353", ClientTorrc: []string{"ConfluxEnabled 0", "LongLivedPorts 53"},
		Timeout: 1500e6, NoInfoLog: true,
		OnionServices: []OnionService{{Name: "dot", Port: 853, Target: "127.0.0.1:8456"}, {Name: "web_2", Port: 80, Target: "127.0.0.2:8080"}},
	}.env()
	if err != nil {
		t.Fatal(err)
	}
	if timeout != 2e9 {
		t.Errorf("timeout: got %v, want 2s", timeout)
	}
	for _, want := range []string{
		"TOR_LAB_TIMEOUT=2", "TOR_LAB_MIDDLES=1", "TOR_LAB_EXITS=3", "TOR_LAB_EXIT_DNS=127.0.0.2:5353",
		"TOR_LAB_CLIENT_EXTRA=ConfluxEnabled 0\nLongLivedPorts 53", "TOR_LAB_INFO_LOG=0",
		"TOR_LAB_ONION_SERVICES=dot 853 127.0.0.1:8456\nweb_2 80 127.0.0.2:8080",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("env %q lacks %q", env, want)
		}
	}
}

func TestBlockFree(t *testing.T) {
	base, err := freeBlock(6, true)
	if err != nil {
		t.Fatal(err)
	}
	if base < 10000 || base+blockSize > labtest.EphemeralLow() {
		t.Errorf("freeBlock: %d, want a block in 10000..%d", base, labtest.EphemeralLow())
	}
	if !blockFree(base, 6, true) {
		t.Fatalf("block %d not free right after freeBlock", base)
	}
	// take the last exit's ControlPort
	ln, err := netListen(base + 70 + 5)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if blockFree(base, 6, false) {
		t.Errorf("block %d free with port %d taken", base, base+75)
	}
	if !blockFree(base, 5, false) {
		t.Errorf("block %d for 5 relays not free, though port %d is not one of theirs", base, base+75)
	}
	// take the onion host's ControlPort
	ln2, err := netListen(base + 154)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if blockFree(base, 5, true) {
		t.Errorf("block %d free for an onion host with port %d taken", base, base+154)
	}
	if !blockFree(base, 5, false) {
		t.Errorf("block %d without an onion host not free, though port %d is only the onion host's", base, base+154)
	}
}

func TestStartMissingTor(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Start(Options{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start without tor on PATH: got %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "tor") {
		t.Errorf("error %q does not name tor", err)
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 OK\r\n",
		"250-version=0.4.9.11\r\n250 OK\r\n",
		"250+config-text=\r\nSocksPort 1\r\n..dot\r\n.\r\n250 OK\r\n",
		"510 Unrecognized command \"FOO\"\r\n",
		"650 " + evSucceeded + "\r\n",
		"250-a\r\n251 OK\r\n",
		"250+x=\nabc",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(strings.NewReader(string(b)))
		for range 4 { // a stream of replies
			code, lines, err := readReply(r)
			if err != nil {
				return
			}
			if code < 100 || code > 699 || len(lines) == 0 {
				t.Fatalf("got code %d with %d lines", code, len(lines))
			}
			for _, l := range lines {
				if strings.ContainsRune(l, '\n') {
					t.Fatalf("line %q contains LF", l)
				}
			}
		}
	})
}

func FuzzParseStreamEvent(f *testing.F) {
	for _, s := range []string{
		evNew, evSucceeded,
		"STREAM 31 CLOSED 9 localhost:53 REASON=DONE",
		`STREAM 1 FAILED 0 a:1 SOCKS_USERNAME="a \"b\"\\c\n\101\0" FLAG  X=`,
		`STREAM 1 NEW 0 a:1 X="\400"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseStreamEvent(s)
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("error %v does not wrap ErrBadReply", err)
			}
			return
		}
		for _, f := range []string{e.ID, e.Status, e.CircuitID, e.Target} {
			if f == "" || strings.ContainsAny(f, " \"") {
				t.Fatalf("field %q of %q", f, s)
			}
		}
		if e.SOCKSUser != e.Args["SOCKS_USERNAME"] || e.SOCKSPassword != e.Args["SOCKS_PASSWORD"] {
			t.Fatalf("SOCKS fields %q %q, args %v", e.SOCKSUser, e.SOCKSPassword, e.Args)
		}
		e.SplitExit()
	})
}

func netListen(port int) (net.Listener, error) {
	return net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
}
