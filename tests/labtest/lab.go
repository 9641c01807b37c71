package labtest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors returned by this package.
var (
	// ErrUnavailable means a component of the lab is missing: a program
	// that tests/lab/install.sh installs, the repository's scripts, or the
	// Go DNSCrypt server, which could not be built. [StartTB] skips the test
	// for it (outside CI).
	ErrUnavailable = errors.New("labtest: lab component unavailable")
	// ErrClosed is returned by the methods of a [Lab] that was closed.
	ErrClosed = errors.New("labtest: lab closed")
)

// ProviderName is the provider name of every DNSCrypt listener of the lab.
const ProviderName = "2.dnscrypt-cert.lab.test"

// Time limits of the scripts.
const (
	startTimeout   = 3 * time.Minute // start.sh waits up to 20 s for each service
	stopTimeout    = 30 * time.Second
	consoleTimeout = 30 * time.Second
)

// Options configure [Start]. The zero value starts everything with a 24-hour
// certificate and a DNSSEC-signed zone.
type Options struct {
	// NoGoServer skips the ameshkov/dnscrypt server (and its build):
	// Lab.Go and Lab.StampGo are then "".
	NoGoServer bool
	// CertTTL is the lifetime of the resolver certificates (dnsdist and Go
	// server). The dnsdist certificates are valid from one hour before the
	// start until the start plus CertTTL. Zero means 24 hours; it is rounded
	// up to whole seconds.
	CertTTL time.Duration
	// NoDNSSEC serves lab.test unsigned; Lab.TrustAnchorDS is then "".
	NoDNSSEC bool
	// StampProps is the props field of the sdns:// stamps (1 DNSSEC,
	// 2 no logs, 4 no filter). Zero means 7.
	StampProps uint8
}

// Lab is a running lab. Addresses are "127.0.0.1:PORT". Its methods may be
// called from several goroutines.
type Lab struct {
	Dir string // state directory: configs, keys, logs (*.log), lab.env

	ProviderName     string            // "2.dnscrypt-cert.lab.test"
	ProviderKey      ed25519.PublicKey // provider public key, shared by all DNSCrypt listeners
	ProviderKeyColon string            // dnscrypt-proxy 1.x form "E3C2:F35A:...", 16 groups
	ProviderKeyHex   string            // 64 lower-case hex digits

	// DNSCrypt listeners (UDP and TCP), each forwarding to Backend.
	XSalsa  string // dnsdist bind 0: ES 1 (X25519-XSalsa20Poly1305), serial 1
	XChaCha string // dnsdist bind 1: ES 2 (X25519-XChaCha20Poly1305), serial 1
	Mixed   string // dnsdist bind 2: ES 1 serial 1 and ES 2 serial 2
	Go      string // ameshkov/dnscrypt, ES 1, serves its cert over TCP too; "" with NoGoServer

	// sdns:// stamps of the listeners above.
	StampXSalsa, StampXChaCha, StampMixed, StampGo string

	Backend string // unbound, authoritative for lab.test. (UDP and TCP)
	Plain   string // dnsdist plain DNS in front of Backend (UDP and TCP)

	// Plain-DNS stamps (sdns:// type 0x00) of Plain and Backend.
	StampPlain, StampBackend string

	// dnsdist's DNS-over-TLS and DNS-over-HTTPS listeners (TCP), in front of
	// Backend, with a self-signed P-256 certificate for TLSName made at each
	// start. DoH takes RFC 8484 GET and POST, HTTP/1.1 and HTTP/2, at
	// DoHURL's path; DoHURL names the host TLSName, which does not resolve:
	// connect to DoHAddr.
	DoT, DoHAddr string // "127.0.0.1:PORT"
	DoHURL       string // "https://dns.lab.test:PORT/dns-query"
	TLSName      string // "dns.lab.test", the certificate's only name (SAN)
	TLSCert      string // the certificate's PEM file, for a client's root pool
	// TLSTBSHash is the hex SHA-256 of the certificate's TBS part
	// (x509.Certificate.RawTBSCertificate): the pin of StampDoT and StampDoH.
	TLSTBSHash string
	// StampDoT and StampDoH pin the certificate by TLSTBSHash. As DNS
	// stamps have it, their address is the bare IP "127.0.0.1" (go-dnsstamps
	// adds the default port 853 or 443) and the real port rides on the host
	// name: "dns.lab.test:PORT".
	StampDoT, StampDoH string

	// unbound's own DoT and DoH (HTTP/2 only) on Backend's zone, with a
	// certificate of its own for BackendTLSName: the same meanings as the
	// fields above.
	BackendDoT, BackendDoHAddr     string
	BackendDoHURL                  string // "https://backend.lab.test:PORT/dns-query"
	BackendTLSName, BackendTLSCert string // "backend.lab.test"
	BackendTLSTBSHash              string
	StampBackendDoT                string
	StampBackendDoH                string

	Socks     string // SOCKS5, no authentication (TCP CONNECT only)
	SocksAuth string // SOCKS5 with username/password
	SocksUser string
	SocksPass string

	ConsoleAddr string // dnsdist console (TCP); use [Lab.Console] (a field cannot share the method's name)
	ConsoleKey  string // its setKey key (base64)

	Zone          string // "lab.test."
	TrustAnchorDS string // file with the DS record of lab.test's KSK; "" with NoDNSSEC

	// Validity of the dnsdist certificates (from the start).
	CertNotBefore, CertNotAfter time.Time

	// Env holds every LAB_* variable of the state dir's lab.env, for
	// programs run by tests (see tests/lab/README.md).
	Env map[string]string

	root     string // repository root
	ownDir   bool   // Start made Dir; Close removes it unless keep
	mu       sync.Mutex
	closed   bool
	keep     bool
	closeErr error
}

// Start starts a lab on free loopback ports in a new temporary state
// directory. It returns once every service answers (about 0.6 s on an idle
// machine; the first call may also build the Go server and make the DNSSEC
// keys it then keeps in tests/.bin). On failure nothing of the lab is left
// running. Errors for missing programs wrap [ErrUnavailable].
//
// Start does not install anything: tests/lab/install.sh does that.
func Start(opts Options) (*Lab, error) {
	if opts.CertTTL < 0 {
		return nil, fmt.Errorf("labtest: negative CertTTL %v", opts.CertTTL)
	}
	root := RepoRoot()
	if root == "" {
		return nil, fmt.Errorf("%w: repository root (go.mod of %s) not found", ErrUnavailable, modulePath)
	}
	if err := checkTools(); err != nil {
		return nil, err
	}
	goServer, goBin := "1", ""
	if opts.NoGoServer {
		goServer = "0"
	} else {
		var err error
		if goBin, err = GoServerBinary(); err != nil {
			return nil, err
		}
	}
	dnssec := "1"
	if opts.NoDNSSEC {
		dnssec = "0"
	}
	ttl := int64(86400)
	if opts.CertTTL > 0 {
		ttl = int64((opts.CertTTL + time.Second - 1) / time.Second)
	}
	props := cmp.Or(opts.StampProps, 7)
	env := []string{
		"LAB_GO_SERVER=" + goServer,
		"LAB_GO_DNSCRYPT=" + goBin,
		"LAB_OWNER_PID=" + strconv.Itoa(os.Getpid()),
		"LAB_DNSSEC=" + dnssec,
		"LAB_CERT_TTL=" + strconv.FormatInt(ttl, 10),
		"LAB_STAMP_PROPS=" + strconv.Itoa(int(props)),
		// Making RSA keys is the slowest step of a start; one key pair
		// for lab.test is kept in the repository's ignored tests/.bin.
		"LAB_DNSSEC_KEY_CACHE=" + filepath.Join(root, "tests", ".bin", "dnssec-keys"),
	}

	dir, err := os.MkdirTemp("", "dnscrypt-lab-")
	if err != nil {
		return nil, fmt.Errorf("labtest: %w", err)
	}
	l := &Lab{Dir: dir, root: root, ownDir: true}
	// A port may be taken between the check here and the daemon's bind (by
	// another lab or any program): then try once more with other ports.
	for attempt := 0; ; attempt++ {
		var ports []int
		ports, err = freePorts(len(portVars))
		if err != nil {
			err = fmt.Errorf("labtest: picking ports: %w", err)
			break
		}
		err = l.runStart(env, ports)
		if err == nil || attempt == 1 || !errors.Is(err, errPortClash) {
			break
		}
	}
	if err == nil {
		err = l.load()
	}
	if err != nil {
		l.keep = BoolEnv("LAB_KEEP_STATE")
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// errPortClash marks a start that failed because a port was taken.
var errPortClash = errors.New("port in use")

// runStart runs start.sh once with the environment base and ports, in the
// order of portVars. A port found busy gives an error wrapping errPortClash.
func (l *Lab) runStart(base []string, ports []int) error {
	env := append(WithoutEnv(os.Environ(), "LAB_*"), base...)
	for i, v := range portVars {
		env = append(env, v+"="+strconv.Itoa(ports[i]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	out, err := l.script(ctx, env, "start.sh", l.Dir)
	if err != nil {
		if strings.Contains(strings.ToLower(out), "already in use") {
			err = fmt.Errorf("%w: %w", errPortClash, err)
		}
		return fmt.Errorf("labtest: start.sh: %w\n%s", err, LastLines(out, 40))
	}
	return nil
}

// portVars are the environment variables of start.sh for the ports.
var portVars = []string{
	"LAB_PORT_XSALSA", "LAB_PORT_XCHACHA", "LAB_PORT_MIXED", "LAB_PORT_GO",
	"LAB_PORT_SOCKS", "LAB_PORT_SOCKS_AUTH", "LAB_PORT_CONSOLE",
	"LAB_PORT_BACKEND", "LAB_PORT_PLAIN", "LAB_PORT_DOT", "LAB_PORT_DOH",
	"LAB_PORT_BACKEND_DOT", "LAB_PORT_BACKEND_DOH",
}

// tools are the programs start.sh and the other scripts run.
var tools = []string{
	"bash", "unbound", "unbound-checkconf", "dnsdist", "dig", "kdig", "openssl", "microsocks",
	"ldns-keygen", "ldns-signzone", "setsid", "od", "base64", "sha256sum", "timeout",
}

func checkTools() error {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found (run tests/lab/install.sh)", ErrUnavailable, strings.Join(missing, ", "))
	}
	return nil
}

// freePorts returns n different ports that were free on 127.0.0.1 for both
// TCP and UDP. It draws them at random below the kernel's ephemeral range,
// where outgoing sockets (of other labs starting up, say) do not take them
// meanwhile, and falls back to ports the kernel picks.
func freePorts(n int) ([]int, error) {
	lo, hi := 10000, EphemeralLow()-1
	var held []interface{ Close() error }
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	seen := map[int]bool{}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
		port := 0
		if hi-lo > 1000 && tries < 500 {
			port = lo + rand.IntN(hi-lo+1)
		}
		if seen[port] {
			continue
		}
		ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		port = ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil || seen[port] {
			ln.Close()
			if pc != nil {
				pc.Close()
			}
			continue
		}
		held = append(held, ln, pc)
		seen[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}

// EphemeralLow returns the first port of the kernel's ephemeral range
// (net.ipv4.ip_local_port_range): test harnesses pick fixed ports below
// it, where outgoing connections never take them.
func EphemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v < 1024 || v > 65535 {
		return 32768
	}
	return v
}

// load fills l from Dir/lab.env and the provider key file.
func (l *Lab) load() error {
	b, err := os.ReadFile(filepath.Join(l.Dir, "lab.env"))
	if err != nil {
		return fmt.Errorf("labtest: %w", err)
	}
	env, err := ParseEnv("lab.env", b)
	if err != nil {
		return err
	}
	l.Env = env
	var missing []string
	get := func(k string, optional bool) string {
		v, ok := env[k]
		if !ok || (v == "" && !optional) {
			missing = append(missing, k)
		}
		return v
	}
	l.ProviderName = get("LAB_PROVIDER_NAME", false)
	l.ProviderKeyColon = get("LAB_PROVIDER_KEY", false)
	l.ProviderKeyHex = get("LAB_PROVIDER_KEY_HEX", false)
	l.XSalsa = get("LAB_RESOLVER_ADDRESS", false)
	l.XChaCha = get("LAB_RESOLVER_ADDRESS_XCHACHA", false)
	l.Mixed = get("LAB_RESOLVER_ADDRESS_MIXED", false)
	l.Go = get("LAB_RESOLVER_ADDRESS_GO", true)
	l.StampXSalsa = get("LAB_STAMP", false)
	l.StampXChaCha = get("LAB_STAMP_XCHACHA", false)
	l.StampMixed = get("LAB_STAMP_MIXED", false)
	l.StampGo = get("LAB_STAMP_GO", true)
	l.Backend = get("LAB_BACKEND", false)
	l.Plain = get("LAB_PLAIN", false)
	l.StampPlain = get("LAB_STAMP_PLAIN", false)
	l.StampBackend = get("LAB_STAMP_BACKEND", false)
	l.DoT = get("LAB_DOT", false)
	l.DoHAddr = get("LAB_DOH_ADDR", false)
	l.DoHURL = get("LAB_DOH", false)
	l.TLSName = get("LAB_TLS_NAME", false)
	l.TLSCert = get("LAB_TLS_CERT", false)
	l.TLSTBSHash = get("LAB_TLS_TBS_SHA256", false)
	l.StampDoT = get("LAB_STAMP_DOT", false)
	l.StampDoH = get("LAB_STAMP_DOH", false)
	l.BackendDoT = get("LAB_BACKEND_DOT", false)
	l.BackendDoHAddr = get("LAB_BACKEND_DOH_ADDR", false)
	l.BackendDoHURL = get("LAB_BACKEND_DOH", false)
	l.BackendTLSName = get("LAB_BACKEND_TLS_NAME", false)
	l.BackendTLSCert = get("LAB_BACKEND_TLS_CERT", false)
	l.BackendTLSTBSHash = get("LAB_BACKEND_TLS_TBS_SHA256", false)
	l.StampBackendDoT = get("LAB_STAMP_BACKEND_DOT", false)
	l.StampBackendDoH = get("LAB_STAMP_BACKEND_DOH", false)
	l.Socks = get("LAB_SOCKS", false)
	l.SocksAuth = get("LAB_SOCKS_AUTH", false)
	l.SocksUser = get("LAB_SOCKS_USER", false)
	l.SocksPass = get("LAB_SOCKS_PASS", false)
	l.ConsoleAddr = get("LAB_CONSOLE", false)
	l.ConsoleKey = get("LAB_CONSOLE_KEY", false)
	l.Zone = get("LAB_ZONE", false)
	l.TrustAnchorDS = get("LAB_DNSSEC_DS_FILE", true)
	nb, na := get("LAB_CERT_NOT_BEFORE", false), get("LAB_CERT_NOT_AFTER", false)
	if len(missing) > 0 {
		return fmt.Errorf("labtest: lab.env lacks %s", strings.Join(missing, ", "))
	}
	for _, t := range []struct {
		s   string
		dst *time.Time
	}{{nb, &l.CertNotBefore}, {na, &l.CertNotAfter}} {
		sec, err := strconv.ParseInt(t.s, 10, 64)
		if err != nil {
			return fmt.Errorf("labtest: lab.env: certificate time %q: %w", t.s, err)
		}
		*t.dst = time.Unix(sec, 0)
	}
	pub, err := os.ReadFile(filepath.Join(l.Dir, "keys", "provider.pub"))
	if err != nil {
		return fmt.Errorf("labtest: %w", err)
	}
	if len(pub) != ed25519.PublicKeySize || hex.EncodeToString(pub) != l.ProviderKeyHex {
		return fmt.Errorf("labtest: keys/provider.pub (%d bytes) does not match LAB_PROVIDER_KEY_HEX %s", len(pub), l.ProviderKeyHex)
	}
	l.ProviderKey = ed25519.PublicKey(pub)
	return nil
}

// ParseEnv parses the environment files the lab and torlab scripts write
// (lab.env, torlab's env): "export KEY=VALUE" lines (the "export " is
// optional), blank lines and "#" comments. Values are taken literally. name
// names the file in errors.
func ParseEnv(name string, b []byte) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("labtest: %s line %d: want KEY=VALUE, got %q", name, n, sc.Text())
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("labtest: %s: %w", name, err)
	}
	return env, nil
}

// Keep makes [Lab.Close] leave the state directory (logs, configs) in
// place, for a look after a failure.
func (l *Lab) Keep() {
	l.mu.Lock()
	l.keep = true
	l.mu.Unlock()
}

// Close stops every process of the lab (stop.sh) and removes the state
// directory, unless LAB_KEEP_STATE=1 is set, [Lab.Keep] was called or
// [StartTB]'s test failed.
// It may be called more than once; later calls return the first result.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closeErr
	}
	l.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if out, err := l.script(ctx, nil, "stop.sh", l.Dir); err != nil {
		l.closeErr = fmt.Errorf("labtest: stop.sh: %w\n%s", err, LastLines(out, 20))
		return l.closeErr
	}
	if l.ownDir && !l.keep && !BoolEnv("LAB_KEEP_STATE") {
		if err := os.RemoveAll(l.Dir); err != nil {
			l.closeErr = fmt.Errorf("labtest: %w", err)
		}
	}
	return l.closeErr
}

// Console runs one Lua command on dnsdist's console (tests/lab/console.sh)
// and returns its answer without the final newline. A Lua error is an error.
// The lab's helpers are there: labCerts() lists the certificates of all binds,
// one per line ("bind=0 serial=1 es=1 active=true from=... until=...").
func (l *Lab) Console(lua string) (string, error) {
	return l.run("console.sh", "-s", l.Dir, lua)
}

// Rotate runs tests/lab/rotate-cert.sh on the lab with args, for example
// Rotate("-b", "0", "--remove-old"), and returns the certificate list it
// prints afterwards (as labCerts()). See the script's --help for the options.
func (l *Lab) Rotate(args ...string) (string, error) {
	return l.run("rotate-cert.sh", append([]string{"-s", l.Dir}, args...)...)
}

// BindOf returns dnsdist's bind number of a DNSCrypt listener address, for
// Rotate's -b: 0 for XSalsa, 1 for XChaCha, 2 for Mixed, and -1 for any other
// address (the Go server cannot rotate).
func (l *Lab) BindOf(addr string) int {
	switch addr {
	case "":
		return -1
	case l.XSalsa:
		return 0
	case l.XChaCha:
		return 1
	case l.Mixed:
		return 2
	}
	return -1
}

// run runs a lab script on a started, not closed lab and returns its stdout.
func (l *Lab) run(name string, args ...string) (string, error) {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), consoleTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := l.command(ctx, nil, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("labtest: %s: %w\n%s", name, err, LastLines(stderr.String(), 20))
	}
	return strings.TrimRight(stdout.String(), "\n"), nil
}

// script runs a lab script and returns its stdout and stderr together.
func (l *Lab) script(ctx context.Context, env []string, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := l.command(ctx, env, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (l *Lab) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(l.root, "tests", "lab", name)}, args...)...)
	if env == nil {
		env = WithoutEnv(os.Environ(), "LAB_*")
	}
	cmd.Env = env
	// The daemons write to their own log files, but do not hang on a pipe
	// some stray child might still hold.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}
