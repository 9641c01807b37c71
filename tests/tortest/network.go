package tortest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// Errors returned by this package.
var (
	// ErrUnavailable means tor, tor-gencert, a tool the scripts use, or the
	// scripts themselves (tests/torlab) are missing. [StartTB] skips the
	// test for it (outside CI).
	ErrUnavailable = errors.New("tortest: tor network unavailable")
	// ErrClosed is returned by the methods of a closed [Network].
	ErrClosed = errors.New("tortest: network closed")
	// ErrControl is wrapped by the error for a control port reply that is
	// not 2xx; the error text carries the code and tor's message.
	ErrControl = errors.New("tortest: control port error")
	// ErrBadReply is wrapped by the error for bytes from the control port
	// that do not follow the control protocol.
	ErrBadReply = errors.New("tortest: malformed control reply")
	// ErrBadCommand means a control command contained CR or LF.
	ErrBadCommand = errors.New("tortest: control command must be one line")
)

// Defaults of [Options].
const (
	DefaultTimeout = 120 * time.Second
	defaultMiddles = 1
	defaultExits   = 2
	maxRelays      = 20 // the port layout has room for 20 relays
	stopTimeout    = 30 * time.Second
	// blockSize is the span of ports a network uses from its PortBase.
	blockSize = 200
)

// Options configure [Start]. The zero value starts three authorities, one
// middle relay, two exits and the client on a free block of loopback ports.
type Options struct {
	// PortBase fixes the ports: ORPort of relay i is PortBase+10+i, its
	// DirPort PortBase+30+i, its ControlPort PortBase+70+i; the client's
	// SocksPort is PortBase+150, ControlPort PortBase+151, DNSPort
	// PortBase+152 (UDP), and the exits' resolver is 127.0.0.1:PortBase+153
	// unless ExitDNS is set. tests/torlab's scripts default to 9000. Zero
	// picks a free block below the kernel's ephemeral port range, so that
	// several networks (test binaries) may run at once, and so that a test
	// service on 127.0.0.1:0 is never one of the relays' ports.
	PortBase int
	// ExitDNS is the only resolver the exits ask for hostname targets,
	// "127.x.y.z:PORT". Empty means 127.0.0.1:PortBase+153, where nothing
	// listens, so only IP targets work. A test that needs hostname targets
	// starts its resolver (UDP) before Start and passes its address: the
	// exits give up on a resolver that did not answer and retry only after
	// 10 s, 30 s, 90 s.
	ExitDNS string
	// Middles and Exits are the numbers of middle and exit relays; zero
	// means 1 and 2. With the three authorities there may be 20 relays.
	Middles, Exits int
	// ClientTorrc and RelayTorrc are extra torrc lines for the client and
	// for every relay, such as "ConfluxEnabled 0".
	ClientTorrc, RelayTorrc []string
	// Timeout bounds Start and StartClient(true); zero means
	// DefaultTimeout. It is rounded up to whole seconds.
	Timeout time.Duration
	// NoInfoLog makes the tors write notice logs only (no info.log).
	NoInfoLog bool
	// FreshKeys makes new relay keys instead of reusing those kept in the
	// repository's tests/.bin/tor-keys (made there by the first start).
	FreshKeys bool

	// ownerPid replaces the test binary as the process whose end stops
	// the tors (for tests of that).
	ownerPid int
}

// Network is a running private Tor network. Addresses are "127.0.0.1:PORT".
// Its methods may be called from several goroutines.
type Network struct {
	Dir string // state directory: nodes/<nick>/{torrc,notice.log,info.log,pid}, env

	SOCKS       string // the client's SocksPort (IsolateSOCKSAuth: one circuit per username/password)
	ControlAddr string // the client's ControlPort; see [Network.Control]
	Cookie      string // the client's control_auth_cookie (rewritten at each client start)
	DNSPort     string // the client's DNSPort (UDP; A, AAAA and PTR only)
	ExitDNS     string // the exits' resolver

	Relays     []string // relay nicknames: auth0..auth2, middle0.., exit0..
	RelayPorts []int    // their ORPorts and DirPorts; tor refuses them as targets

	// BootstrapTime is the time from the relays' launch to the client's
	// "Bootstrapped 100%". The client is launched once an authority has
	// published a consensus listing every relay, ConsensusTime after the
	// relays' launch; ClientBootstrapTime is the time from the client's
	// launch to "Bootstrapped 100%".
	BootstrapTime, ConsensusTime, ClientBootstrapTime time.Duration
	// StartTime is the wall time of Start: keys, configs, the wait for a
	// voting slot, bootstrap, and the first SOCKS CONNECT through an exit.
	StartTime time.Duration

	// Env holds the TOR_LAB_* variables of Dir/env.
	Env map[string]string

	scripts string // tests/torlab
	timeout time.Duration

	clientMu sync.Mutex // serialises client starts and stops

	mu       sync.Mutex
	closed   bool
	keep     bool
	closeErr error
	watchers map[net.Conn]struct{}
	done     chan struct{} // closed by Close
	resumer  *exec.Cmd     // set while the relays are paused
}

// Start starts a private Tor network in a new temporary directory and
// returns once a SOCKS5 CONNECT through the client and an exit to a TCP port
// on 127.0.0.1 works. It takes 10-25 s (key generation, a wait of up to 5 s
// for the authorities' voting slot, the first consensus, bootstrap); it
// fails after opts.Timeout with the tails of the tor logs. On failure nothing
// is left running. The tors exit by themselves within about 15 s if the test
// binary dies without closing the network. Errors for missing programs wrap
// [ErrUnavailable].
func Start(opts Options) (*Network, error) {
	t0 := time.Now()
	timeout, env, err := opts.env()
	if err != nil {
		return nil, err
	}
	scripts, err := scriptsDir()
	if err != nil {
		return nil, err
	}
	if !opts.FreshKeys {
		env = append(env, "TOR_LAB_KEY_CACHE="+filepath.Join(scripts, "..", ".bin", "tor-keys"))
	}
	if err := checkTools(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "torlab-")
	if err != nil {
		return nil, fmt.Errorf("tortest: %w", err)
	}
	n := &Network{Dir: dir, scripts: scripts, timeout: timeout, done: make(chan struct{})}
	relays := 3 + cmp.Or(opts.Middles, defaultMiddles) + cmp.Or(opts.Exits, defaultExits)
	// A port may be taken between the check and tor's bind (by another
	// network or any program): then try again with another block.
	for attempt := 0; ; attempt++ {
		base := opts.PortBase
		if base == 0 {
			if base, err = freeBlock(relays); err != nil {
				break
			}
		}
		err = n.runStart(append(env, "TOR_LAB_PORT_BASE="+strconv.Itoa(base)))
		if err == nil || opts.PortBase != 0 || attempt == 2 || !errors.Is(err, errPortClash) {
			break
		}
	}
	if err == nil {
		err = n.load()
	}
	if err != nil {
		n.keep = labtest.BoolEnv("TOR_LAB_KEEP_STATE")
		if cerr := n.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if n.keep {
			err = fmt.Errorf("%w (state kept in %s)", err, dir)
		}
		return nil, err
	}
	n.StartTime = time.Since(t0)
	return n, nil
}

// env checks opts and returns the timeout and the scripts' environment
// (without the port base).
func (o Options) env() (time.Duration, []string, error) {
	switch {
	case o.PortBase < 0 || o.PortBase > 65535-blockSize:
		return 0, nil, fmt.Errorf("tortest: PortBase %d out of range 1..%d", o.PortBase, 65535-blockSize)
	case o.Middles < 0 || o.Exits < 0:
		return 0, nil, fmt.Errorf("tortest: negative relay count (Middles %d, Exits %d)", o.Middles, o.Exits)
	case 3+cmp.Or(o.Middles, defaultMiddles)+cmp.Or(o.Exits, defaultExits) > maxRelays:
		return 0, nil, fmt.Errorf("tortest: at most %d relays (3 authorities, %d middles, %d exits)",
			maxRelays, cmp.Or(o.Middles, defaultMiddles), cmp.Or(o.Exits, defaultExits))
	case o.Timeout < 0:
		return 0, nil, fmt.Errorf("tortest: negative Timeout %v", o.Timeout)
	}
	if o.ExitDNS != "" {
		ap, err := netip.ParseAddrPort(o.ExitDNS)
		if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() || ap.Port() == 0 {
			return 0, nil, fmt.Errorf("tortest: ExitDNS %q is not a 127.x.y.z:PORT address", o.ExitDNS)
		}
	}
	for _, lines := range [][]string{o.ClientTorrc, o.RelayTorrc} {
		for _, l := range lines {
			if strings.ContainsAny(l, "\r\n") {
				return 0, nil, fmt.Errorf("tortest: torrc line %q contains a line break", l)
			}
		}
	}
	timeout := cmp.Or(o.Timeout, DefaultTimeout)
	secs := int64((timeout + time.Second - 1) / time.Second)
	env := []string{
		"TOR_LAB_OWNER_PID=" + strconv.Itoa(cmp.Or(o.ownerPid, os.Getpid())),
		"TOR_LAB_TIMEOUT=" + strconv.FormatInt(secs, 10),
		"TOR_LAB_MIDDLES=" + strconv.Itoa(cmp.Or(o.Middles, defaultMiddles)),
		"TOR_LAB_EXITS=" + strconv.Itoa(cmp.Or(o.Exits, defaultExits)),
		"TOR_LAB_CLIENT_EXTRA=" + strings.Join(o.ClientTorrc, "\n"),
		"TOR_LAB_RELAY_EXTRA=" + strings.Join(o.RelayTorrc, "\n"),
	}
	if o.ExitDNS != "" {
		env = append(env, "TOR_LAB_EXIT_DNS="+o.ExitDNS)
	}
	if o.NoInfoLog {
		env = append(env, "TOR_LAB_INFO_LOG=0")
	}
	return time.Duration(secs) * time.Second, env, nil
}

// scriptsDir returns the directory of the torlab scripts.
func scriptsDir() (string, error) {
	root := labtest.RepoRoot()
	if root == "" {
		return "", fmt.Errorf("%w: repository root not found", ErrUnavailable)
	}
	dir := filepath.Join(root, "tests", "torlab")
	for _, s := range []string{"lib.sh", "start.sh", "stop.sh", "client.sh"} {
		if _, err := os.Stat(filepath.Join(dir, s)); err != nil {
			return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return dir, nil
}

// tools are the programs the scripts run.
var tools = []string{"bash", "tor", "tor-gencert", "ss", "awk", "sed", "od", "dd", "timeout"}

func checkTools() error {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found (apt-get install tor; tests/lab/install.sh installs it)",
			ErrUnavailable, strings.Join(missing, ", "))
	}
	return nil
}

// errPortClash marks a start that failed because a port was taken.
var errPortClash = errors.New("port in use")

// runStart runs start.sh once.
func (n *Network) runStart(env []string) error {
	// start.sh bounds itself by TOR_LAB_TIMEOUT; this is the backstop.
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout+30*time.Second)
	defer cancel()
	out, err := n.script(ctx, env, "start.sh", n.Dir)
	if err != nil {
		if strings.Contains(out, "already in use") {
			err = fmt.Errorf("%w: %w", errPortClash, err)
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (killed after %v)", err, n.timeout+30*time.Second)
		}
		return fmt.Errorf("tortest: start.sh: %w\n%s", err, labtest.LastLines(out, 200))
	}
	return nil
}

// freeBlock returns a port base whose ports for relays relays and the
// client are free on 127.0.0.1, below the kernel's ephemeral range (where
// outgoing connections and test services on port 0 never land).
func freeBlock(relays int) (int, error) {
	lo, hi := 10000, labtest.EphemeralLow()-blockSize
	if hi <= lo {
		lo, hi = 1024, 65535-blockSize
	}
	slots := (hi - lo) / blockSize
	for range 100 {
		base := lo + rand.IntN(slots)*blockSize
		if blockFree(base, relays) {
			return base, nil
		}
	}
	return 0, errors.New("tortest: no free block of ports on 127.0.0.1")
}

// blockFree reports whether the TCP ports of a network at base, and its
// UDP DNSPort, can be bound on 127.0.0.1.
func blockFree(base, relays int) bool {
	tcp := []int{base + 150, base + 151}
	for i := range relays {
		tcp = append(tcp, base+10+i, base+30+i, base+70+i)
	}
	var held []interface{ Close() error }
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for _, p := range tcp {
		ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		held = append(held, ln)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(base+152))
	if err != nil {
		return false
	}
	held = append(held, pc)
	return true
}

// load fills n from Dir/env and Dir/client-times.
func (n *Network) load() error {
	env, err := readEnv(filepath.Join(n.Dir, "env"))
	if err != nil {
		return err
	}
	n.Env = env
	var missing []string
	get := func(k string) string {
		v := env[k]
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	n.SOCKS = get("TOR_LAB_SOCKS")
	n.ControlAddr = get("TOR_LAB_CONTROL")
	n.Cookie = get("TOR_LAB_CONTROL_COOKIE")
	n.DNSPort = get("TOR_LAB_DNSPORT")
	n.ExitDNS = get("TOR_LAB_EXIT_DNS")
	n.Relays = strings.Fields(get("TOR_LAB_RELAYS"))
	ports := strings.Fields(get("TOR_LAB_RELAY_PORTS"))
	secs := map[string]*time.Duration{
		"TOR_LAB_BOOTSTRAP_S": &n.BootstrapTime,
		"TOR_LAB_CONSENSUS_S": &n.ConsensusTime,
	}
	for k := range secs {
		get(k)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("tortest: %s/env lacks %s", n.Dir, strings.Join(missing, ", "))
	}
	for _, p := range ports {
		v, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("tortest: env: relay port %q: %w", p, err)
		}
		n.RelayPorts = append(n.RelayPorts, v)
	}
	for k, d := range secs {
		if *d, err = seconds(env[k]); err != nil {
			return fmt.Errorf("tortest: env: %s: %w", k, err)
		}
	}
	n.ClientBootstrapTime, err = n.clientBootTime()
	return err
}

// clientBootTime returns the time from the client's last launch to its
// "Bootstrapped 100%", from Dir/client-times.
func (n *Network) clientBootTime() (time.Duration, error) {
	ct, err := readEnv(filepath.Join(n.Dir, "client-times"))
	if err != nil {
		return 0, err
	}
	start, err1 := seconds(ct["CLIENT_T_START"])
	boot, err2 := seconds(ct["CLIENT_T_BOOT"])
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("tortest: client-times: %w", err)
	}
	return boot - start, nil
}

// seconds parses a decimal number of seconds.
func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(f * float64(time.Second)), nil
}

// readEnv reads a KEY=VALUE file of the scripts.
func readEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tortest: %w", err)
	}
	env, err := labtest.ParseEnv(path, b)
	if err != nil {
		return nil, fmt.Errorf("tortest: %w", err)
	}
	return env, nil
}

// IsRelayPort reports whether port is one of the relays' ORPorts or
// DirPorts, which tor refuses as a target ("the network would reject it").
func (n *Network) IsRelayPort(port int) bool {
	for _, p := range n.RelayPorts {
		if p == port {
			return true
		}
	}
	return false
}

// Pids returns the running tor processes of the network by nickname
// ("client", "auth0", ...): the processes started as
// "tor -f DIR/nodes/NICK/torrc", found in /proc (as stop.sh finds them), so
// also one whose pid file is not written yet. Zombies do not count.
func (n *Network) Pids() map[string]int {
	pids := map[string]int{}
	prefix := filepath.Join(n.Dir, "nodes") + "/"
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 3 || args[1] != "-f" {
			continue
		}
		nick, ok := strings.CutPrefix(args[2], prefix)
		if !ok { // a tor of another network
			continue
		}
		if nick, ok = strings.CutSuffix(nick, "/torrc"); !ok || nick == "" || strings.Contains(nick, "/") {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil || !running(pid) {
			continue
		}
		pids[nick] = pid
	}
	return pids
}

// running reports whether process pid exists and is not a zombie (tor
// daemonises, so init reaps it, at its own pace).
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && !bytes.HasPrefix(stat[i:], []byte(") Z"))
}

// StopClient stops the Tor client; the relays keep running. It returns once
// the client has exited and its SocksPort refuses connections. Open SOCKS
// connections and control connections (and [Network.WatchStreams]
// channels) end.
func (n *Network) StopClient() error {
	n.clientMu.Lock()
	defer n.clientMu.Unlock()
	if n.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if out, err := n.script(ctx, nil, "client.sh", "stop", n.Dir); err != nil {
		return fmt.Errorf("tortest: client.sh stop: %w\n%s", err, labtest.LastLines(out, 40))
	}
	return nil
}

// StartClient starts the Tor client again after [Network.StopClient]. It
// returns once the SocksPort listens; Tor is then not bootstrapped yet (a
// restart with the kept directory information takes 1-3 s). With wait, it
// returns only once the client reports "Bootstrapped 100%" and a SOCKS5
// CONNECT through an exit to 127.0.0.1 works, or fails after the network's
// Timeout. Starting a running client is an error.
func (n *Network) StartClient(wait bool) error {
	n.clientMu.Lock()
	defer n.clientMu.Unlock()
	if n.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout+30*time.Second)
	defer cancel()
	args := []string{"start", n.Dir}
	if wait {
		args = []string{"start", "--wait", n.Dir}
	}
	env := []string{"TOR_LAB_TIMEOUT=" + strconv.Itoa(int(n.timeout/time.Second))}
	if out, err := n.script(ctx, env, "client.sh", args...); err != nil {
		return fmt.Errorf("tortest: client.sh start: %w\n%s", err, labtest.LastLines(out, 200))
	}
	return nil
}

// maxPause is how long the relays stay paused at most, even if the test
// binary dies meanwhile (they then notice and exit).
const maxPause = 10 * time.Minute

// PauseRelays stops every relay (SIGSTOP) until [Network.ResumeRelays] or
// Close, and at most 10 minutes. Meanwhile the client's SocksPort accepts
// connections and answers the SOCKS handshake, but CONNECTs wait (existing
// circuits included), until the relays resume or tor's 2-minute SOCKS
// timeout. A client started meanwhile ([Network.StartClient] without wait)
// stays at bootstrap 10%: this is how a test gets a Tor that is "not
// bootstrapped yet" for as long as it needs. After ResumeRelays, CONNECTs
// worked again within about 0.2 s, even after a 30 s pause. Pausing paused
// relays does nothing.
func (n *Network) PauseRelays() error {
	n.clientMu.Lock()
	defer n.clientMu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if n.resumer != nil {
		return nil
	}
	pids, err := n.relayPids()
	if err != nil {
		return err
	}
	// A detached process resumes them after maxPause, so that they can
	// exit if the test binary dies while they are paused.
	args := []string{"-c", `sleep "$1"; shift; kill -CONT "$@"`, "resumer", strconv.Itoa(int(maxPause / time.Second))}
	for _, pid := range pids {
		args = append(args, strconv.Itoa(pid))
	}
	cmd := exec.Command("sh", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("tortest: pausing relays: %w", err)
	}
	n.resumer = cmd
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			n.resume(pids)
			return fmt.Errorf("tortest: pausing relay pid %d: %w", pid, err)
		}
	}
	return nil
}

// ResumeRelays lets the relays paused by [Network.PauseRelays] run again.
// Resuming running relays does nothing.
func (n *Network) ResumeRelays() error {
	n.clientMu.Lock()
	defer n.clientMu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if n.resumer == nil {
		return nil
	}
	pids, err := n.relayPids()
	n.resume(pids)
	return err
}

// resume sends SIGCONT to pids and ends the resumer; n.mu is held.
func (n *Network) resume(pids []int) {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGCONT)
	}
	if n.resumer != nil {
		// the shell and its sleep: the process group it leads
		syscall.Kill(-n.resumer.Process.Pid, syscall.SIGKILL)
		n.resumer.Wait()
		n.resumer = nil
	}
}

// relayPids returns the pids of all relays, or an error if one is not
// running.
func (n *Network) relayPids() ([]int, error) {
	var pids []int
	running := n.Pids()
	for _, nick := range n.Relays {
		pid, ok := running[nick]
		if !ok {
			return pids, fmt.Errorf("tortest: relay %s is not running", nick)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func (n *Network) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Keep makes [Network.Close] leave the state directory (torrcs, logs) in
// place, for a look after a failure.
func (n *Network) Keep() {
	n.mu.Lock()
	n.keep = true
	n.mu.Unlock()
}

// Close stops every tor of the network and removes its directory, unless
// TOR_LAB_KEEP_STATE=1 is set, [Network.Keep] was called or [StartTB]'s
// test failed. It returns an
// error if a tor process of the network is still running afterwards. It may
// be called more than once; later calls return the first result.
func (n *Network) Close() error {
	n.clientMu.Lock()
	defer n.clientMu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return n.closeErr
	}
	n.closed = true
	close(n.done)
	if n.resumer != nil {
		pids, _ := n.relayPids()
		n.resume(pids)
	}
	for c := range n.watchers {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if out, err := n.script(ctx, nil, "stop.sh", n.Dir); err != nil {
		n.closeErr = fmt.Errorf("tortest: stop.sh: %w\n%s", err, labtest.LastLines(out, 20))
	}
	if left := n.Pids(); len(left) > 0 {
		n.closeErr = errors.Join(n.closeErr, fmt.Errorf("tortest: tor processes still running after stop.sh: %v", left))
		n.keep = true
	}
	if !n.keep && !labtest.BoolEnv("TOR_LAB_KEEP_STATE") {
		if err := os.RemoveAll(n.Dir); err != nil {
			n.closeErr = errors.Join(n.closeErr, fmt.Errorf("tortest: %w", err))
		}
	}
	return n.closeErr
}

// script runs a torlab script and returns its stdout and stderr together.
// The script's environment is the test's, without TOR_LAB_* variables, plus
// extra.
func (n *Network) script(ctx context.Context, extra []string, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(n.scripts, name)}, args...)...)
	cmd.Env = append(labtest.WithoutEnv(os.Environ(), "TOR_LAB_*"), extra...)
	cmd.Stdout, cmd.Stderr = &out, &out
	// tor daemonises and writes to its own logs; never hang on a pipe a
	// stray child might still hold.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	return out.String(), err
}
