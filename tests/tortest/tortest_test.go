package tortest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/proxy"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// echoServer accepts TCP connections on 127.0.0.1:0 and echoes them until
// the test ends. It returns its address and port.
func echoServer(t *testing.T) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port
}

// dialer returns a SOCKS5 dialer through the network's client; user ""
// means no authentication.
func dialer(t *testing.T, n *Network, user string) proxy.ContextDialer {
	t.Helper()
	var auth *proxy.Auth
	if user != "" {
		auth = &proxy.Auth{User: user, Password: "pw-" + user}
	}
	d, err := proxy.SOCKS5("tcp", n.SOCKS, auth, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	return d.(proxy.ContextDialer)
}

// dial opens a stream to target as user and checks that data flows both
// ways. It returns the connection and the time the CONNECT took.
func dial(t *testing.T, n *Network, user, target string) (net.Conn, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	c, err := dialer(t, n, user).DialContext(ctx, "tcp", target)
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("SOCKS CONNECT to %s as %q: %v", target, user, err)
	}
	t.Cleanup(func() { c.Close() })
	echoCheck(t, c, "hello from "+user)
	return c, took
}

func echoCheck(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write through Tor: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read through Tor: %v", err)
	}
	if !bytes.Equal(got, []byte(msg)) {
		t.Fatalf("echo through Tor: got %q, want %q", got, msg)
	}
}

// collect reads events until done reports true for the events so far, or
// fails the test after timeout.
func collect(t *testing.T, ch <-chan StreamEvent, timeout time.Duration, done func([]StreamEvent) bool) []StreamEvent {
	t.Helper()
	var evs []StreamEvent
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for !done(evs) {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("stream events channel closed; got %d events", len(evs))
			}
			evs = append(evs, e)
		case <-timer.C:
			var raw []string
			for _, e := range evs {
				raw = append(raw, e.Raw)
			}
			t.Fatalf("timed out waiting for stream events; got:\n%s", strings.Join(raw, "\n"))
		}
	}
	return evs
}

// exitResolver serves DNS over UDP on 127.0.0.1:0 until the test ends:
// every A question gets 127.0.0.1, other types an empty answer, and names
// under "nxdomain." NXDOMAIN. It returns the address and a counter of the
// questions it answered.
func exitResolver(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 {
			name := q.Question[0].Name
			switch {
			case dns.IsSubDomain("nxdomain.", name):
				m.Rcode = dns.RcodeNameError
			case q.Question[0].Qtype == dns.TypeA:
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String(), &asked
}

func TestNetwork(t *testing.T) {
	resolver, asked := exitResolver(t)
	n := StartTB(t, Options{ExitDNS: resolver})
	t.Logf("start %v: consensus %v after the relays' launch, client bootstrapped %v after its launch, %v after the relays'",
		n.StartTime.Round(time.Millisecond), n.ConsensusTime.Round(time.Millisecond),
		n.ClientBootstrapTime.Round(time.Millisecond), n.BootstrapTime.Round(time.Millisecond))
	if want := []string{"auth0", "auth1", "auth2", "middle0", "exit0", "exit1"}; !slices.Equal(n.Relays, want) {
		t.Errorf("Relays: got %v, want %v", n.Relays, want)
	}
	if len(n.RelayPorts) != 12 {
		t.Errorf("RelayPorts: got %v, want 12 ports", n.RelayPorts)
	}
	if n.ExitDNS != resolver {
		t.Errorf("ExitDNS: got %s, want %s", n.ExitDNS, resolver)
	}
	if pids := n.Pids(); len(pids) != 7 {
		t.Errorf("Pids: got %v, want 7 tor processes", pids)
	}
	target, port := echoServer(t)
	if n.IsRelayPort(port) {
		t.Fatalf("echo server port %d is a relay port", port)
	}

	t.Run("Control", func(t *testing.T) {
		v, err := n.Control("GETINFO version")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(v, "version=0.4.") {
			t.Errorf("GETINFO version: got %q, want version=0.4.*", v)
		}
		t.Logf("%s", v)
		b, err := n.Control("GETINFO status/bootstrap-phase")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b, "PROGRESS=100") {
			t.Errorf("bootstrap phase: got %q, want PROGRESS=100", b)
		}
		// a multi-line reply: "250+config-text=" data block
		cfg, err := n.Control("GETINFO config-text")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cfg, "config-text=\n") || !strings.Contains(cfg, "\nSocksPort "+n.SOCKS) {
			t.Errorf("GETINFO config-text: got %q, want a data block with the SocksPort line", cfg)
		}
		if out, err := n.Control("SETCONF MaxCircuitDirtiness=600"); err != nil || out != "" {
			t.Errorf("SETCONF: got %q, %v, want \"\", nil", out, err)
		}
		out, err := n.Control("NOSUCHCOMMAND x")
		if !errors.Is(err, ErrControl) || !strings.Contains(out, "Unrecognized command") {
			t.Errorf("unknown command: got %q, %v, want an ErrControl error with tor's message", out, err)
		}
		if _, err := n.Control("GETINFO version\r\nSIGNAL HALT"); !errors.Is(err, ErrBadCommand) {
			t.Errorf("two lines: got %v, want ErrBadCommand", err)
		}
	})

	t.Run("Isolation", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, err := n.WatchStreams(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		for _, u := range []string{"alice", "bob", "alice", ""} {
			c, _ := dial(t, n, u, target)
			conns = append(conns, c)
		}
		count := func(status string) func([]StreamEvent) bool {
			return func(evs []StreamEvent) bool {
				k := 0
				for _, e := range evs {
					if e.Status == status {
						k++
					}
				}
				return k >= len(conns)
			}
		}
		evs := collect(t, events, 30*time.Second, count("SUCCEEDED"))
		circs := map[string][]string{} // user -> circuit IDs of its SUCCEEDED streams
		exits := map[string]bool{}
		for _, e := range evs {
			t.Logf("event: %s", e.Raw)
			if e.Status != "SUCCEEDED" {
				continue
			}
			plain, exit := e.SplitExit()
			if plain != target {
				t.Errorf("stream %s: target %q (%q), want %s", e.ID, e.Target, plain, target)
			}
			exits[exit] = true
			if e.CircuitID == "" || e.CircuitID == "0" {
				t.Errorf("stream %s succeeded on circuit %q", e.ID, e.CircuitID)
			}
			want := "pw-" + e.SOCKSUser
			if e.SOCKSUser == "" {
				want = ""
			}
			if e.SOCKSPassword != want {
				t.Errorf("stream %s: SOCKS password %q, want %q", e.ID, e.SOCKSPassword, want)
			}
			circs[e.SOCKSUser] = append(circs[e.SOCKSUser], e.CircuitID)
		}
		a, b, none := circs["alice"], circs["bob"], circs[""]
		if len(a) != 2 || len(b) != 1 || len(none) != 1 {
			t.Fatalf("SUCCEEDED streams by user: got %v, want alice 2, bob 1, none 1", circs)
		}
		if a[0] != a[1] {
			t.Errorf("alice's two streams: circuits %s and %s, want the same", a[0], a[1])
		}
		if a[0] == b[0] || a[0] == none[0] || b[0] == none[0] {
			t.Errorf("circuits: alice %s, bob %s, no auth %s, want three different", a[0], b[0], none[0])
		}
		t.Logf("IP target %s left through exits %v", target, slices.Collect(maps.Keys(exits)))
		cs, err := n.Control("GETINFO circuit-status")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("circuit-status:\n%s", cs)

		for _, c := range conns {
			c.Close()
		}
		for _, e := range collect(t, events, 30*time.Second, count("CLOSED")) {
			if e.Status == "CLOSED" {
				t.Logf("event: %s", e.Raw)
			}
		}
	})

	t.Run("Hostname", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, err := n.WatchStreams(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := asked.Load()
		host := net.JoinHostPort("echo.lab.test", strconv.Itoa(port))
		dial(t, n, "h", host)
		if asked.Load() == before {
			t.Errorf("the exits did not ask %s for echo.lab.test", resolver)
		}
		evs := collect(t, events, 30*time.Second, func(evs []StreamEvent) bool {
			return slices.ContainsFunc(evs, func(e StreamEvent) bool { return e.Status == "SUCCEEDED" })
		})
		for _, e := range evs {
			t.Logf("event: %s", e.Raw)
		}
		d := dialer(t, n, "h")
		_, err = d.DialContext(ctx, "tcp", net.JoinHostPort("no.nxdomain", strconv.Itoa(port)))
		if err == nil || !strings.Contains(err.Error(), "host unreachable") {
			t.Errorf("CONNECT to an NXDOMAIN name: got %v, want host unreachable", err)
		}
		_, err = d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n.RelayPorts[0])))
		if err == nil {
			t.Errorf("CONNECT to relay port %d: got no error", n.RelayPorts[0])
		}
		t.Logf("CONNECT to a relay port: %v", err)
	})

	t.Run("ClientRestart", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, err := n.WatchStreams(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old, _ := dial(t, n, "before-stop", target)
		if err := n.StopClient(); err != nil {
			t.Fatal(err)
		}
		if _, ok := n.Pids()["client"]; ok {
			t.Errorf("client still running after StopClient: %v", n.Pids())
		}
		c, err := net.DialTimeout("tcp", n.SOCKS, 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("SocksPort %s accepts connections after StopClient", n.SOCKS)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial SocksPort after StopClient: got %v, want connection refused", err)
		}
		if _, err := dialer(t, n, "x").DialContext(ctx, "tcp", target); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("SOCKS dial after StopClient: got %v, want connection refused", err)
		}
		old.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := old.Read(make([]byte, 1)); err == nil {
			t.Errorf("a stream of the stopped client still reads")
		}
		if _, err := n.Control("GETINFO version"); err == nil {
			t.Errorf("Control works with the client stopped")
		}
		select {
		case _, ok := <-drain(events):
			if ok {
				t.Errorf("WatchStreams channel not closed after StopClient")
			}
		case <-time.After(10 * time.Second):
			t.Errorf("WatchStreams channel not closed 10 s after StopClient")
		}
		if err := n.StopClient(); err != nil {
			t.Errorf("second StopClient: %v", err)
		}

		// Not waiting: the SocksPort listens, Tor is still bootstrapping.
		t0 := time.Now()
		if err := n.StartClient(false); err != nil {
			t.Fatal(err)
		}
		listening := time.Since(t0)
		phase, err := n.Control("GETINFO status/bootstrap-phase")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("StartClient(false) returned after %v; then %s", listening.Round(time.Millisecond), phase)
		c, err = net.DialTimeout("tcp", n.SOCKS, 5*time.Second)
		if err != nil {
			t.Fatalf("SocksPort after StartClient(false): %v", err)
		}
		c.Close()
		if err := n.StartClient(false); err == nil {
			t.Errorf("StartClient of a running client: got nil error")
		}
		for !strings.Contains(phase, "PROGRESS=100") {
			if time.Since(t0) > time.Minute {
				t.Fatalf("client not bootstrapped a minute after StartClient(false): %s", phase)
			}
			time.Sleep(50 * time.Millisecond)
			if phase, err = n.Control("GETINFO status/bootstrap-phase"); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("client restart: bootstrapped %v after StartClient(false)", time.Since(t0).Round(time.Millisecond))
		dial(t, n, "after-restart-1", target)

		if err := n.StopClient(); err != nil {
			t.Fatal(err)
		}
		t0 = time.Now()
		if err := n.StartClient(true); err != nil {
			t.Fatal(err)
		}
		t.Logf("StartClient(true) took %v", time.Since(t0).Round(time.Millisecond))
		dial(t, n, "after-restart-2", target)
		dial(t, n, "", target)
	})

	t.Run("NotBootstrapped", func(t *testing.T) {
		if err := n.StopClient(); err != nil {
			t.Fatal(err)
		}
		if err := n.PauseRelays(); err != nil {
			t.Fatal(err)
		}
		if err := n.PauseRelays(); err != nil {
			t.Errorf("second PauseRelays: %v", err)
		}
		if err := n.StartClient(false); err != nil {
			t.Fatal(err)
		}
		notBootstrapped(t, n, target)
		time.Sleep(2 * time.Second)
		notBootstrapped(t, n, target)
		t0 := time.Now()
		if err := n.ResumeRelays(); err != nil {
			t.Fatal(err)
		}
		if err := n.ResumeRelays(); err != nil {
			t.Errorf("second ResumeRelays: %v", err)
		}
		_, took := dial(t, n, "after-resume", target)
		t.Logf("after ResumeRelays: first CONNECT took %v, done %v after resuming", took.Round(time.Millisecond),
			time.Since(t0).Round(time.Millisecond))
	})
}

// notBootstrapped checks a client that cannot reach the relays: its
// SocksPort answers, a CONNECT waits, and it reports no bootstrap.
func notBootstrapped(t *testing.T, n *Network, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := dialer(t, n, "waiting").DialContext(ctx, "tcp", target)
	if err == nil {
		c.Close()
		t.Fatalf("CONNECT with the relays paused: got a connection")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("CONNECT with the relays paused: got %v, want a timeout (SOCKS handshake done, CONNECT pending)", err)
	}
	phase, err := n.Control("GETINFO status/bootstrap-phase")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(phase, "PROGRESS=100") {
		t.Errorf("client bootstrapped with the relays paused: %s", phase)
	}
	t.Logf("relays paused: CONNECT timed out, %s", phase)
}

// drain returns a channel that is closed once ch is closed, discarding
// events.
func drain(ch <-chan StreamEvent) <-chan StreamEvent {
	out := make(chan StreamEvent)
	go func() {
		for range ch {
		}
		close(out)
	}()
	return out
}

// TestStartClose starts and closes networks one after the other in the same
// test binary, with other options each time, and checks that nothing is
// left behind: by Close, or by the tors themselves once their owner process
// is gone.
func TestStartClose(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping two more network starts (about 40 s) in -short mode")
	}
	if err := checkTools(); err != nil {
		labtest.Require(t, "tor", err)
	}
	for i, c := range []struct {
		opts       Options
		fixedPorts bool
		owner      bool // a child process owns the tors; it is killed instead of Close
		pause      bool // Close with the relays paused
	}{
		{opts: Options{Exits: 1, NoInfoLog: true}, pause: true},
		{fixedPorts: true, owner: true},
	} {
		opts := c.opts
		if c.fixedPorts {
			base, err := freeBlock(6, false)
			if err != nil {
				t.Fatal(err)
			}
			opts.PortBase = base
		}
		var owner *exec.Cmd
		if c.owner {
			owner = exec.Command("sleep", "600")
			if err := owner.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { owner.Process.Kill(); owner.Wait() })
			opts.ownerPid = owner.Process.Pid
		}
		n, err := Start(opts)
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		t.Logf("start %d (%+v) took %v, bootstrap %v", i, opts, n.StartTime.Round(time.Millisecond), n.BootstrapTime.Round(time.Millisecond))
		pids := n.Pids()
		if want := 3 + cmp.Or(opts.Middles, 1) + cmp.Or(opts.Exits, 2) + 1; len(pids) != want {
			t.Errorf("start %d: got %d tor processes %v, want %d", i, len(pids), pids, want)
		}
		if opts.PortBase != 0 && n.SOCKS != "127.0.0.1:"+strconv.Itoa(opts.PortBase+150) {
			t.Errorf("start %d: SOCKS %s, want port %d", i, n.SOCKS, opts.PortBase+150)
		}
		if _, err := os.Stat(n.Dir + "/nodes/auth0/info.log"); (err == nil) == opts.NoInfoLog {
			t.Errorf("start %d: info.log exists: %v, want %v", i, err == nil, !opts.NoInfoLog)
		}
		target, _ := echoServer(t)
		dial(t, n, "u", target)
		resumer := 0
		if c.pause {
			if err := n.PauseRelays(); err != nil {
				t.Fatal(err)
			}
			resumer = n.resumer.Process.Pid
		}
		dir := n.Dir
		if owner != nil {
			t0 := time.Now()
			owner.Process.Kill()
			owner.Wait()
			for len(n.Pids()) > 0 {
				if time.Since(t0) > time.Minute {
					t.Fatalf("start %d: tors still running a minute after their owner died: %v", i, n.Pids())
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("start %d: the tors exited %v after their owner", i, time.Since(t0).Round(100*time.Millisecond))
		}
		if err := n.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		for nick, pid := range pids {
			if running(pid) {
				t.Errorf("close %d: %s (pid %d) still runs", i, nick, pid)
			}
		}
		if resumer != 0 {
			// its process group (the shell and its sleep) must be gone
			t0 := time.Now()
			for syscall.Kill(-resumer, 0) == nil && time.Since(t0) < 10*time.Second {
				time.Sleep(100 * time.Millisecond)
			}
			if err := syscall.Kill(-resumer, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("close %d: the relays' resumer (process group %d) still exists: %v", i, resumer, err)
			}
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("close %d: state dir %s: got %v, want it removed", i, dir, err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := n.Control("GETINFO version"); !errors.Is(err, ErrClosed) {
			t.Errorf("Control after Close: got %v, want ErrClosed", err)
		}
		if err := n.StartClient(true); !errors.Is(err, ErrClosed) {
			t.Errorf("StartClient after Close: got %v, want ErrClosed", err)
		}
		if err := n.PauseRelays(); !errors.Is(err, ErrClosed) {
			t.Errorf("PauseRelays after Close: got %v, want ErrClosed", err)
		}
		if _, err := n.WatchStreams(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("WatchStreams after Close: got %v, want ErrClosed", err)
		}
	}
}

// TestStartTimeout: a start that cannot finish in time fails with the tor
// logs' tails and leaves no tor running.
func TestStartTimeout(t *testing.T) {
	if err := checkTools(); err != nil {
		labtest.Require(t, "tor", err)
	}
	t.Setenv("TOR_LAB_KEEP_STATE", "1")
	t0 := time.Now()
	n, err := Start(Options{Timeout: 2 * time.Second, NoInfoLog: true})
	took := time.Since(t0)
	if err == nil {
		n.Close()
		t.Fatalf("Start with a 2 s timeout succeeded (%v)", took)
	}
	t.Logf("Start failed after %v: %.300s", took.Round(time.Millisecond), err)
	if errors.Is(err, ErrUnavailable) {
		t.Errorf("got ErrUnavailable for a timeout: %v", err)
	}
	if took > 32*time.Second {
		t.Errorf("Start took %v to fail, want about 2 s (plus key generation)", took)
	}
	msg := err.Error()
	i := strings.Index(msg, "(state kept in ")
	if i < 0 {
		t.Fatalf("error does not name the kept state dir: %v", err)
	}
	dir := strings.TrimSuffix(msg[i+len("(state kept in "):], ")")
	t.Cleanup(func() { os.RemoveAll(dir) })
	if !strings.Contains(msg, "FAILED") || !strings.Contains(msg, "notice.log (last 25 lines)") {
		t.Errorf("error lacks the failure and the log tails: %v", err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir+"/")) {
			if pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p))); running(pid) {
				t.Errorf("process %s still runs: %q", p, b)
			}
		}
	}
}
