// Command torlatency measures DNS query latency through a private Tor
// network on loopback (tests/torlab), for the numbers of the Tor mode.
//
// Every subject is a separate process listening on loopback, asked in turn
// (one query to each, round after round, so that load from elsewhere hits
// them alike; -one-by-one asks each n times before the next, so that their
// circuits never interleave on the relays' connections):
//
//   - this tree's proxy (built here), the query sent after the SOCKS
//     CONNECT reply ("awaited") or right after the request ("optimistic
//     data"), through Tor's TCP SocksPort and through a Unix-domain one;
//   - with -before PATH, another build of the proxy (e.g. main's), the same
//     ways over TCP;
//   - with -dnscrypt-proxy2 PATH, dnscrypt-proxy 2.x (configured by a
//     generated TOML: one static stamp, force_tcp, proxy = socks5://...);
//   - this tree's proxy with the other upstream kinds (-kinds), as the
//     command line names them, each to unbound behind the exits: plain DNS
//     over TCP (--resolver-address=tcp://...), DoT and DoH (--stamp with
//     the lab's pin), and DoT and DoH to unbound published as onion
//     services of the network (--stamp with the .onion name), where the
//     queries never leave Tor. On a warm circuit they share one persistent
//     connection, where every DNSCrypt query opens a stream.
//
// Cold rows put each query on a circuit that carried no stream before:
// --isolation=query for the proxy; for 2.x, which cannot isolate, the
// circuit of each query is closed through the control port after it (the
// "new circ" column checks it). Warm rows use one open circuit per
// subject. Answers: small (www.lab.test A), ~1.1 KB (medium.lab.test TXT)
// and ~3.5 KB (big.lab.test TXT), asked over UDP with a 4096-byte EDNS
// buffer and checked whole. The DNSCrypt resolver is the lab's Go server
// behind the exits. It prints median and 90th percentile over -n queries
// per row, the Tor streams each warm subject opened for them, and, for
// each warm row of another kind, its median over the DNSCrypt one's
// ("proxy, warm, awaited").
//
// Usage: go run ./tests/bench/torlatency [-n 100] [-one-by-one] [-only TEXT]
// [-modes cold,warm] [-sizes small,medium,big] [-kinds tcp,tls,https,onion-tls,onion-https]
// [-before PATH] [-dnscrypt-proxy2 PATH] [-client-torrc LINE]... [-relay-torrc LINE]...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jedisct1/go-dnsstamps"
	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

var (
	n         = flag.Int("n", 100, "queries per row")
	before    = flag.String("before", "", "path of another build of this proxy, measured beside this tree's")
	v2        = flag.String("dnscrypt-proxy2", "", "path of a dnscrypt-proxy 2.x binary, measured beside")
	onlyModes = flag.String("modes", "cold,warm", "which circuit modes to measure")
	sizeList  = flag.String("sizes", "small,medium,big", "which answers to ask for")
	oneByOne  = flag.Bool("one-by-one", false, "ask each subject n times before the next, instead of in turn")
	only      = flag.String("only", "", "measure only the subjects whose label contains this text")
	kindList  = flag.String("kinds", "tcp,tls,https,onion-tls,onion-https", "other upstream kinds to measure beside DNSCrypt (\"\": none)")
	clientRC  lines
	relayRC   lines
)

// lines is a repeatable flag.
type lines []string

func (l *lines) String() string     { return strings.Join(*l, "; ") }
func (l *lines) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	flag.Var(&clientRC, "client-torrc", "extra torrc line for the Tor client (repeatable), e.g. 'ConfluxEnabled 0'")
	flag.Var(&relayRC, "relay-torrc", "extra torrc line for every relay and authority (repeatable), e.g. 'ConsensusParams cfx_enabled=0'")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintf(os.Stderr, "torlatency: -n %d: at least one query per row\n", *n)
		os.Exit(2)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "torlatency:", err)
		os.Exit(1)
	}
}

// question is one of the answers asked for.
type question struct {
	label   string
	name    string
	qtype   uint16
	records int // answer records of the whole answer
}

var questions = []question{
	{"small", "www.lab.test.", dns.TypeA, 1},
	{"medium", "medium.lab.test.", dns.TypeTXT, 4},
	{"big", "big.lab.test.", dns.TypeTXT, 13},
}

// subject is a program under measurement.
type subject struct {
	label string
	args  func(listen string) []string // nil for 2.x
	v2    bool
	kind  string // this tree's proxy: the upstream kind ("dnscrypt", "tcp", ...)
	user  string // SOCKS user: of 2.x (its circuits are closed in cold rows), of a warm subject

	addr  string
	cmd   *exec.Cmd
	d     map[string][]time.Duration // by question label
	newC  map[string]int             // cold 2.x: queries on a circuit not seen before
	fails map[string]int             // queries without a whole answer
}

func run() error {
	work, err := os.MkdirTemp("", "torlatency")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	self := filepath.Join(work, "dnscrypt-proxy")
	build := exec.Command("go", "build", "-o", self, "./cmd/dnscrypt-proxy")
	build.Dir, build.Stderr = labtest.RepoRoot(), os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the proxy: %w", err)
	}

	lab, err := labtest.Start(labtest.Options{})
	if err != nil {
		return err
	}
	defer lab.Close()
	sockDir := filepath.Join(work, "tor")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		return err
	}
	unixSocks := filepath.Join(sockDir, "socks")
	fmt.Fprintln(os.Stderr, "starting the private Tor network...")
	tor, err := tortest.Start(tortest.Options{ExitDNS: lab.Backend,
		ClientTorrc: append([]string{"SocksPort unix:" + unixSocks + " IsolateSOCKSAuth"}, clientRC...),
		RelayTorrc:  relayRC, OnionServices: onionServices(lab), NoInfoLog: true})
	if err != nil {
		return err
	}
	defer tor.Close()
	fmt.Printf("Tor network up in %v; resolver %s (Go DNSCrypt server) behind the exits; %d queries per row\n",
		tor.StartTime.Round(100*time.Millisecond), lab.Go, *n)
	if *kindList != "" {
		fmt.Printf("other kinds: unbound %s (TCP), %s (DoT), %s (DoH) behind the exits; onion services %s, %s\n",
			lab.Backend, lab.BackendDoT, lab.BackendDoHAddr, tor.OnionAddr("dot"), tor.OnionAddr("doh"))
	}
	fmt.Printf("SocksPort %s and %s; relays (ORPort, DirPort):", tor.SOCKS, unixSocks)
	for i, r := range tor.Relays {
		fmt.Printf(" %s %d/%d", r, tor.RelayPorts[2*i], tor.RelayPorts[2*i+1])
	}
	fmt.Println()
	if len(clientRC)+len(relayRC) > 0 {
		fmt.Printf("client torrc: %s; relay torrc: %s\n", clientRC.String(), relayRC.String())
	}
	fmt.Println()

	labStamp = lab.StampGo
	streams, stopWatch, err := watch(tor)
	if err != nil {
		return err
	}
	defer stopWatch()

	var qs []question
	for _, q := range questions {
		if slices.Contains(strings.Split(*sizeList, ","), q.label) {
			qs = append(qs, q)
		}
	}
	fmt.Printf("%-58s %9s %9s %9s %9s %9s\n", "", "median", "p90", "max", "new circ", "streams")
	for _, mode := range strings.Split(*onlyModes, ",") {
		if mode != "cold" && mode != "warm" {
			return fmt.Errorf("-modes: unknown mode %q", mode)
		}
		subjects, err := subjectsFor(mode, self, lab, tor, unixSocks, work)
		if err != nil {
			return err
		}
		if err := measure(mode, subjects, qs, tor, streams); err != nil {
			return err
		}
	}
	var starts []time.Duration
	for range 5 {
		d, err := startToAnswer(self, lab, tor)
		if err != nil {
			return err
		}
		starts = append(starts, d)
	}
	report("proxy: start to first answer (5 starts)", starts, "", "")
	return nil
}

// onionServices publishes unbound's DoT and DoH as onion services "dot"
// and "doh" of the network, unless -kinds leaves out both onion kinds.
func onionServices(lab *labtest.Lab) []tortest.OnionService {
	if !strings.Contains(*kindList, "onion") {
		return nil
	}
	return []tortest.OnionService{{Name: "dot", Port: 853, Target: lab.BackendDoT},
		{Name: "doh", Port: 443, Target: lab.BackendDoHAddr}}
}

// kindArgs returns the options naming the resolver of each kind
// ("dnscrypt": the lab's Go server, the others unbound), as a user would
// write them.
func kindArgs(lab *labtest.Lab, tor *tortest.Network) (map[string][]string, error) {
	args := map[string][]string{
		"dnscrypt": {"--resolver-address=" + lab.Go, "--provider-name=" + lab.ProviderName, "--provider-key=" + lab.ProviderKeyColon},
		"tcp":      {"--resolver-address=tcp://" + lab.Backend},
		"tls":      {"--stamp=" + lab.StampBackendDoT},
		"https":    {"--stamp=" + lab.StampBackendDoH},
	}
	for kind, service := range map[string]string{"onion-tls": "dot", "onion-https": "doh"} {
		addr := tor.OnionAddr(service)
		if addr == "" {
			continue
		}
		proto := dnsstamps.StampProtoTypeTLS
		if service == "doh" {
			proto = dnsstamps.StampProtoTypeDoH
		}
		stamp, err := labtest.PinnedStamp(proto, addr, lab.BackendTLSName, lab.BackendTLSTBSHash)
		if err != nil {
			return nil, err
		}
		args[kind] = []string{"--stamp=" + stamp}
	}
	return args, nil
}

// privateLab keeps lab.test's loopback addresses in the answers, which the
// rebinding protection (on through a proxy) would take out.
const privateLab = "--private-domain=lab.test"

// subjectsFor lists the programs of one mode.
func subjectsFor(mode, self string, lab *labtest.Lab, tor *tortest.Network, unixSocks, work string) ([]*subject, error) {
	kinds, err := kindArgs(lab, tor)
	if err != nil {
		return nil, err
	}
	ours := func(label, bin, socks, kind string, optimistic bool) *subject {
		// Credentials of its own in warm mode: a circuit for this subject
		// alone.
		user := ""
		if mode == "warm" {
			user = strings.NewReplacer(" ", "-", ",", "", "(", "", ")", "").Replace(label)
		}
		return &subject{label: label, kind: kind, user: user, args: func(listen string) []string {
			a := append([]string{bin}, kinds[kind]...)
			a = append(a, "--local-address="+listen, "--edns-payload-size=4096", "--loglevel=4", privateLab)
			if mode == "cold" {
				a = append(a, "--proxy=socks5://"+socks, "--isolation=query")
			} else {
				a = append(a, "--proxy=socks5://"+user+":x@"+socks, "--isolation=none")
			}
			if optimistic {
				a = append(a, "--optimistic-data")
			}
			return a
		}}
	}
	var s []*subject
	for _, o := range []bool{false, true} {
		how := map[bool]string{false: "awaited", true: "optimistic data"}[o]
		s = append(s, ours("proxy, "+mode+", "+how, self, tor.SOCKS, "dnscrypt", o))
		s = append(s, ours("proxy, "+mode+", "+how+", unix socket", self, unixSocks, "dnscrypt", o))
		if *before != "" {
			s = append(s, ours("proxy (before), "+mode+", "+how, *before, tor.SOCKS, "dnscrypt", o))
		}
	}
	for _, kind := range strings.Split(*kindList, ",") {
		if kind == "" {
			continue
		}
		if _, ok := kinds[kind]; !ok {
			return nil, fmt.Errorf("-kinds: unknown kind %q (want tcp, tls, https, onion-tls, onion-https)", kind)
		}
		s = append(s, ours("proxy "+kind+", "+mode, self, tor.SOCKS, kind, false))
	}
	if *v2 != "" {
		s = append(s, &subject{label: "dnscrypt-proxy 2.x, " + mode, v2: true, user: "v2" + mode})
	}
	s = slices.DeleteFunc(s, func(x *subject) bool { return !strings.Contains(x.label, *only) })
	for _, x := range s {
		x.d = map[string][]time.Duration{}
		x.newC = map[string]int{}
		x.fails = map[string]int{}
	}
	return s, nil
}

// measure starts the subjects, asks each question n times of each in
// turn, prints the rows and stops them.
func measure(mode string, subjects []*subject, qs []question, tor *tortest.Network, streams *streamLog) (err error) {
	defer func() {
		for _, s := range subjects {
			err = errors.Join(err, s.stop())
		}
	}()
	for _, s := range subjects {
		if err := s.start(tor); err != nil {
			return err
		}
	}
	for _, s := range subjects {
		if err := s.ready(); err != nil {
			return err
		}
	}
	for _, q := range qs {
		seen := map[string]bool{}
		rowStart := streams.len()
		// One query to each subject in turn, n rounds; with -one-by-one,
		// n queries to each subject before the next.
		for i := range *n * len(subjects) {
			s := subjects[i%len(subjects)]
			if *oneByOne {
				s = subjects[i / *n]
			}
			mark := streams.len()
			took, err := ask(s.addr, q)
			if err != nil {
				// A circuit may fail under load: counted, not timed.
				s.fails[q.label]++
				fmt.Fprintf(os.Stderr, "%s, %s: %v\n", s.label, q.label, err)
				continue
			}
			s.d[q.label] = append(s.d[q.label], took)
			if s.v2 && mode == "cold" {
				circ, err := streams.circuitOf(s.user, mark, 5*time.Second)
				if err != nil {
					return fmt.Errorf("%s: %w", s.label, err)
				}
				if !seen[circ] {
					s.newC[q.label]++
				}
				seen[circ] = true
				if _, err := tor.Control("CLOSECIRCUIT " + circ); err != nil {
					return fmt.Errorf("closing circuit %s: %w", circ, err)
				}
			}
		}
		var base time.Duration // the median of "proxy, warm, awaited"
		for _, s := range subjects {
			extra := ""
			if s.v2 && mode == "cold" && len(s.d[q.label]) > 0 {
				extra = strconv.Itoa(s.newC[q.label]*100/len(s.d[q.label])) + "%"
			}
			if f := s.fails[q.label]; f > 0 {
				extra += fmt.Sprintf(" (%d failed)", f)
			}
			nstreams := "-"
			if mode == "warm" && s.user != "" {
				nstreams = strconv.Itoa(streams.succeeded(s.user, rowStart))
			}
			med := report(s.label+", "+q.label, s.d[q.label], extra, nstreams)
			if s.label == "proxy, warm, awaited" {
				base = med
			}
		}
		for _, s := range subjects {
			if mode == "warm" && base > 0 && s.kind != "" && s.kind != "dnscrypt" && len(s.d[q.label]) > 0 {
				fmt.Printf("  %s over DNSCrypt (warm, awaited), %s: %.2f\n", s.kind, q.label,
					float64(median(s.d[q.label]))/float64(base))
			}
		}
		fmt.Println()
	}
	return nil
}

// median returns the median of d, sorted.
func median(d []time.Duration) time.Duration { return d[len(d)/2] }

// report prints a row and returns its median (0 without a measure). It
// sorts d.
func report(label string, d []time.Duration, extra, nstreams string) time.Duration {
	if len(d) == 0 {
		fmt.Printf("%-58s %9s %9s %9s %9s %9s\n", label, "-", "-", "-", extra, nstreams)
		return 0
	}
	slices.Sort(d)
	ms := func(x time.Duration) string { return strconv.FormatFloat(float64(x)/1e6, 'f', 1, 64) + " ms" }
	fmt.Printf("%-58s %9s %9s %9s %9s %9s\n", label, ms(median(d)), ms(d[len(d)*9/10]), ms(d[len(d)-1]), extra, nstreams)
	return median(d)
}

// start launches s on a free loopback port.
func (s *subject) start(tor *tortest.Network) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.addr = "127.0.0.1:" + strconv.Itoa(port)
	var argv []string
	dir, err := os.MkdirTemp("", "torlatency-subject")
	if err != nil {
		return err
	}
	if s.v2 {
		cfg := filepath.Join(dir, "dnscrypt-proxy.toml")
		if err := os.WriteFile(cfg, []byte(v2Config(s.addr, s.user, tor.SOCKS)), 0o600); err != nil {
			return err
		}
		argv = []string{*v2, "-config", cfg}
	} else {
		argv = s.args(s.addr)
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Dir, s.cmd.Stdout, s.cmd.Stderr = dir, log, log
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", s.label, err)
	}
	return nil
}

// v2Config is a dnscrypt-proxy 2.x configuration: the lab's Go server as
// the only (static) resolver, over TCP through Tor, nothing else reached.
func v2Config(listen, user, socks string) string {
	return fmt.Sprintf(`listen_addresses = ['%s']
server_names = ['lab']
ipv6_servers = false
force_tcp = true
proxy = 'socks5://%s:x@%s'
timeout = 30000
cache = false
block_ipv6 = false
dnscrypt_ephemeral_keys = true
netprobe_timeout = 0
netprobe_address = '127.0.0.1:9'
bootstrap_resolvers = ['127.0.0.1:9']
ignore_system_dns = true
log_level = 2

[static]
  [static.'lab']
  stamp = '%s'
`, listen, user, socks, labStamp)
}

// labStamp is the Go server's stamp, set by run.
var labStamp string

// ready waits for s's first whole answer (the certificate has come through
// Tor) and makes one warm-up query.
func (s *subject) ready() error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := ask(s.addr, questions[0])
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.cmd.Dir, "log"))
			return fmt.Errorf("%s: no answer within 90 s: %w; its log:\n%s", s.label, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *subject) stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	return os.RemoveAll(s.cmd.Dir)
}

// ask sends one query over UDP and returns its latency; the answer must be
// whole.
func ask(addr string, q question) (time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion(q.name, q.qtype)
	m.SetEdns0(4096, false)
	c := &dns.Client{Net: "udp", UDPSize: 4096, Timeout: 15 * time.Second}
	start := time.Now()
	r, _, err := c.Exchange(m, addr)
	took := time.Since(start)
	switch {
	case err != nil:
	case r.Rcode != dns.RcodeSuccess:
		err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	case r.Truncated || len(r.Answer) != q.records:
		err = fmt.Errorf("%d records (TC=%v), want %d", len(r.Answer), r.Truncated, q.records)
	}
	return took, err
}

// startToAnswer starts the proxy through Tor with the default options and
// waits for its first answer.
func startToAnswer(self string, lab *labtest.Lab, tor *tortest.Network) (_ time.Duration, err error) {
	s := &subject{label: "start", args: func(listen string) []string {
		return []string{self, "--resolver-address=" + lab.Go, "--provider-name=" + lab.ProviderName,
			"--provider-key=" + lab.ProviderKeyColon, "--local-address=" + listen, "--proxy=socks5://" + tor.SOCKS, privateLab}
	}}
	start := time.Now()
	if err := s.start(tor); err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, s.stop()) }()
	for time.Since(start) < time.Minute {
		if _, err := ask(s.addr, questions[0]); err == nil {
			return time.Since(start), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("no answer within a minute")
}

// freePort returns a loopback port free for both UDP and TCP.
func freePort() (int, error) {
	for range 100 {
		c, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", c.LocalAddr().String())
		c.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, errors.New("no port free for both UDP and TCP")
}

// streamLog keeps the Tor client's STREAM events.
type streamLog struct {
	mu     sync.Mutex
	events []tortest.StreamEvent
}

func watch(tor *tortest.Network) (*streamLog, func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := tor.WatchStreams(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	l := &streamLog{}
	go func() {
		for e := range ch {
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
		}
	}()
	return l, cancel, nil
}

func (l *streamLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// succeeded counts the streams of user that succeeded after event number
// from.
func (l *streamLog) succeeded(user string, from int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events[min(from, len(l.events)):] {
		if e.SOCKSUser == user && e.Status == "SUCCEEDED" {
			n++
		}
	}
	return n
}

// circuitOf returns the circuit of the first stream of user that
// succeeded after event number from.
func (l *streamLog) circuitOf(user string, from int, within time.Duration) (string, error) {
	for deadline := time.Now().Add(within); ; time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		for _, e := range l.events[min(from, len(l.events)):] {
			if e.SOCKSUser == user && e.Status == "SUCCEEDED" {
				l.mu.Unlock()
				return e.CircuitID, nil
			}
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no stream of %q seen", user)
		}
	}
}
