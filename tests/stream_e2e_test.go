package tests

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// streamProxy is a proxy.Proxy served in-process on 127.0.0.1 (UDP and
// TCP on one port), its log at debug level in a buffer.
type streamProxy struct {
	Addr string
	log  *logtest.Buffer
}

func startStreamProxy(t testing.TB, cfg proxy.Config) *streamProxy {
	t.Helper()
	log := &logtest.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	var pc net.PacketConn
	for attempt := 0; ; attempt++ {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if pc, err = net.ListenPacket("udp", ln.Addr().String()); err == nil {
			break
		}
		ln.Close()
		if attempt == 10 {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", log)
		}
	})
	return &streamProxy{Addr: ln.Addr().String(), log: log}
}

// connects counts the upstream connections the proxy made (its debug log
// has a line for each).
func (p *streamProxy) connects() int {
	return strings.Count(p.log.String(), `msg="Connected to the resolver"`)
}

// failures returns the proxy's log lines about failed queries.
func (p *streamProxy) failures() []string {
	var out []string
	for _, l := range strings.Split(p.log.String(), "\n") {
		if strings.Contains(l, "Unable to get an answer") {
			out = append(out, l)
		}
	}
	return out
}

// streamUpstream is one of the lab's plain TCP or DoT servers.
type streamUpstream struct {
	name string
	spec upstream.Spec
	// unbound: the server keeps an idle connection 30 s (dnsdist: 2 s),
	// long enough for a test to count exactly one.
	unbound bool
}

// tbsPin decodes a lab's hex TBS hash.
func tbsPin(t testing.TB, h string) [][32]byte {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		t.Fatalf("TLS pin %q: %v", h, err)
	}
	return [][32]byte{[32]byte(b)}
}

func streamUpstreams(t testing.TB, lab *labtest.Lab) []streamUpstream {
	return []streamUpstream{
		{"tcp unbound", upstream.Spec{Kind: upstream.KindTCP, Addr: lab.Backend}, true},
		{"tcp dnsdist", upstream.Spec{Kind: upstream.KindTCP, Addr: lab.Plain}, false},
		{"tls unbound", upstream.Spec{Kind: upstream.KindTLS, Addr: lab.BackendDoT, ServerName: lab.BackendTLSName,
			Pins: tbsPin(t, lab.BackendTLSTBSHash)}, true},
		{"tls dnsdist", upstream.Spec{Kind: upstream.KindTLS, Addr: lab.DoT, ServerName: lab.TLSName,
			Pins: tbsPin(t, lab.TLSTBSHash)}, false},
	}
}

// ownConns counts this process's established TCP connections to port.
func ownConns(t testing.TB, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ss", "-tnpH", "state", "established", "( dport = :"+port+" )").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	return strings.Count(string(out), fmt.Sprintf("pid=%d,", os.Getpid()))
}

// backendWants are the backend's own answers to typeCases.
func backendWants(t *testing.T, lab *labtest.Lab) map[string]*digResult {
	t.Helper()
	wants := map[string]*digResult{}
	for _, tc := range typeCases {
		wants[tc.name] = runDig(t, "dig", append(append(at(t, lab.Backend), "+bufsize=1232"), tc.args...)...)
		if wants[tc.name].Status == "" {
			t.Fatalf("%s: the backend did not answer:\n%s", tc.name, wants[tc.name].Out)
		}
	}
	return wants
}

// checkTypes asks the proxy at addr every record type of cases with each
// tool over UDP and TCP, and compares the answers with wants; after, if
// not nil, is called after each query with its description.
func checkTypes(t *testing.T, addr string, cases []typeCase, tools []string, wants map[string]*digResult, after func(what string)) {
	t.Helper()
	for _, tc := range cases {
		want := wants[tc.name]
		for _, tool := range tools {
			for _, transport := range []string{"+notcp", "+tcp"} {
				got := runDig(t, tool, append(append(at(t, addr), transport), tc.args...)...)
				if got.Status != want.Status || !slices.Equal(got.Answer, want.Answer) {
					t.Errorf("%s %s %s: got %s %v, want %s %v\n%s", tc.name, tool, transport,
						got.Status, got.Answer, want.Status, want.Answer, got.Out)
				}
				if tc.name == "A with DNSSEC" && !slices.ContainsFunc(got.Answer, isRRSIG) {
					t.Errorf("%s %s %s: no RRSIG in the answer %v", tc.name, tool, transport, got.Answer)
				}
				if after != nil {
					after(tc.name + " " + tool + " " + transport)
				}
			}
		}
	}
}

// checkHuge asks for huge.lab.test TXT (13.4 KB): whole over TCP, and
// over UDP with a buffer that takes it; over UDP truncated by the proxy to
// the client's 1232 bytes.
func checkHuge(t *testing.T, addr string) {
	t.Helper()
	for _, transport := range []string{"+tcp", "+bufsize=65000"} {
		r := runDig(t, "dig", append(at(t, addr), transport, "huge.lab.test", "TXT")...)
		if r.Status != "NOERROR" || len(r.Answer) != 50 || r.flag("tc") {
			t.Errorf("huge %s: %s, %d records, flags %v; want 50 records, no TC\n%.2000s", transport, r.Status, len(r.Answer), r.Flags, r.Out)
		}
	}
	r := runDig(t, "dig", append(at(t, addr), "+notcp", "+ignore", "+bufsize=1232", "huge.lab.test", "TXT")...)
	if r.Status != "NOERROR" || !r.flag("tc") {
		t.Errorf("huge over UDP: %s, flags %v; want TC\n%s", r.Status, r.Flags, r.Out)
	}
}

// burst asks the proxy at addr n different names at once over UDP, and
// returns how many were answered with a record.
func burst(t *testing.T, addr string, n int) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range n {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: 15 * time.Second}
			r, _, err := c.Exchange(msg(fmt.Sprintf("b%d.wild.lab.test", i), dns.TypeA), addr)
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ok
}

// TestStreamRecordTypes: the proxy in front of plain DNS over TCP and DoT
// (unbound and dnsdist, DoT pinned by the TBS hash): every record type over
// UDP and TCP from dig and kdig equals the backend's answer, DNSSEC
// records included; huge.lab.test comes whole over TCP; a burst of 200
// queries at once is pipelined on the one connection (counted in the
// proxy's log and, for unbound, which keeps idle connections 30 s, with
// ss from this process).
func TestStreamRecordTypes(t *testing.T) {
	lab := sharedLab(t)
	wants := backendWants(t, lab)
	for _, up := range streamUpstreams(t, lab) {
		t.Run(up.name, func(t *testing.T) {
			p := startStreamProxy(t, proxy.Config{Resolvers: []upstream.Spec{up.spec}})
			checkTypes(t, p.Addr, typeCases, []string{"dig", "kdig"}, wants, nil)
			checkHuge(t, p.Addr)
			before := p.connects()
			if got := burst(t, p.Addr, 200); got != 200 {
				t.Errorf("burst: %d of 200 answered", got)
			}
			after := p.connects()
			t.Logf("%d connections for %d queries; the burst of 200 took %d more", after, 4*2*len(typeCases)+2+200, after-before)
			if after-before > 1 {
				t.Errorf("the burst of 200 queries took %d new connections, want at most 1", after-before)
			}
			if up.unbound {
				if after != 1 {
					t.Errorf("%d connections to unbound, want 1", after)
				}
				if got := ownConns(t, up.spec.Addr); got != 1 {
					t.Errorf("ss: %d established connections to %s, want 1", got, up.spec.Addr)
				}
			}
			if f := p.failures(); len(f) > 0 {
				t.Errorf("failed queries:\n%s", strings.Join(f, "\n"))
			}
		})
	}
}

// TestStreamUpstreamReal drives the stream upstream directly: 500 queries
// sent at once to each real server, pipelined on one connection (the
// upstream's dial count and ss agree), each answered with its own name and
// the client's ID; a DNSSEC answer carries its RRSIG with the DO bit.
func TestStreamUpstreamReal(t *testing.T) {
	lab := sharedLab(t)
	for _, up := range streamUpstreams(t, lab) {
		t.Run(up.name, func(t *testing.T) {
			u := startUpstream(t, up.spec)
			const n = 500
			r := &collect{ch: make(chan collected, n+1)}
			id := upstream.NewIdentity(egress.Credentials{}, nil, time.Now())
			ask := func(name string, qtype uint16, do bool) *upstream.Query {
				m := new(dns.Msg)
				m.SetQuestion(name, qtype)
				m.Id = 4242 // the same client ID for all
				m.SetEdns0(1232, do)
				pkt, _ := m.Pack()
				prepared, _, err := edns.PrepareQuery(nil, pkt, edns.DefaultPayloadSize)
				if err != nil {
					t.Fatal(err)
				}
				q := &upstream.Query{Msg: prepared, Limit: edns.MaxTCPSize, Deadline: time.Now().Add(15 * time.Second),
					Identity: id, Done: r}
				u.Exchange(q)
				return q
			}
			for i := range n {
				ask(fmt.Sprintf("p%d.wild.lab.test.", i), dns.TypeA, false)
			}
			for range n {
				c := r.next(t)
				m := c.msg(t)
				if m.Id != 4242 || len(m.Answer) != 1 || !c.q.OverTCP ||
					!strings.EqualFold(m.Answer[0].Header().Name, m.Question[0].Name) {
					t.Fatalf("answer %v", m)
				}
			}
			s := u.(*upstream.Stream)
			if s.Dials.Load() != 1 {
				t.Errorf("%d connections for %d queries at once, want 1", s.Dials.Load(), n)
			}
			if got := ownConns(t, up.spec.Addr); got != 1 {
				t.Errorf("ss: %d established connections to %s, want 1", got, up.spec.Addr)
			}
			ask("www.lab.test.", dns.TypeA, true)
			m := r.next(t).msg(t)
			if !slices.ContainsFunc(m.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeRRSIG }) {
				t.Errorf("no RRSIG with DO: %v", m)
			}
			ask("huge.lab.test.", dns.TypeTXT, false)
			if m := r.next(t).msg(t); len(m.Answer) != 50 || m.Truncated {
				t.Errorf("huge: %d records, TC %v", len(m.Answer), m.Truncated)
			}
			if o := m.IsEdns0(); o != nil && slices.ContainsFunc(o.Option, func(e dns.EDNS0) bool {
				return e.Option() == dns.EDNS0PADDING || e.Option() == dns.EDNS0TCPKEEPALIVE
			}) {
				t.Errorf("answer with stream options: %v", o)
			}
		})
	}
}

// startUpstream runs the upstream of spec, directly, until the test ends.
func startUpstream(t *testing.T, spec upstream.Spec) upstream.Upstream {
	t.Helper()
	u, err := upstream.New(spec, upstream.Options{Dialer: egress.Direct()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { u.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait(); u.Close() })
	return u
}

type collected struct {
	q      *upstream.Query
	answer []byte
	err    error
}

// collect is an upstream.Receiver that queues each outcome.
type collect struct{ ch chan collected }

func (c *collect) Receive(q *upstream.Query, answer []byte, err error) {
	c.ch <- collected{q, slices.Clone(answer), err}
}

func (c *collect) next(t *testing.T) collected {
	t.Helper()
	select {
	case r := <-c.ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no outcome within 30 s")
	}
	return collected{}
}

func (r collected) msg(t *testing.T) *dns.Msg {
	t.Helper()
	if r.err != nil {
		t.Fatalf("query failed: %v", r.err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(r.answer); err != nil {
		t.Fatalf("answer %x: %v", r.answer, err)
	}
	return m
}

// TestStreamSOCKS: through microsocks, each stream upstream answers (some
// types, huge), and microsocks saw one connection to unbound for all the
// queries, a burst of 100 included.
func TestStreamSOCKS(t *testing.T) {
	lab := sharedLab(t)
	wants := backendWants(t, lab)
	some := slices.DeleteFunc(slices.Clone(typeCases), func(tc typeCase) bool {
		return !slices.Contains([]string{"A", "MX", "TXT", "RRSIG", "NXDOMAIN", "PTR"}, tc.name)
	})
	for _, up := range streamUpstreams(t, lab) {
		t.Run(up.name, func(t *testing.T) {
			before := socksConnects(t, lab, "socks.log", up.spec.Addr)
			p := startStreamProxy(t, proxy.Config{Resolvers: []upstream.Spec{up.spec},
				SOCKS: &proxy.SOCKS{Addr: lab.Socks}, PrivateDomains: []string{"lab.test"}})
			checkTypes(t, p.Addr, some, []string{"dig"}, wants, nil)
			checkHuge(t, p.Addr)
			if got := burst(t, p.Addr, 100); got != 100 {
				t.Errorf("burst: %d of 100 answered", got)
			}
			got := socksConnects(t, lab, "socks.log", up.spec.Addr) - before
			t.Logf("%d connections through microsocks, %d connects logged by the proxy", got, p.connects())
			if got != p.connects() {
				t.Errorf("microsocks logged %d connections, the proxy %d", got, p.connects())
			}
			if up.unbound && got != 1 {
				t.Errorf("%d connections through microsocks, want 1", got)
			}
			if f := p.failures(); len(f) > 0 {
				t.Errorf("failed queries:\n%s", strings.Join(f, "\n"))
			}
		})
	}
}

// latency asks the proxy at addr n names one after another over UDP and
// returns the median and 90th percentile of the answer times.
func latency(t *testing.T, addr string, n int) (median, p90 time.Duration) {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 30 * time.Second}
	var ds []time.Duration
	for i := range n {
		start := time.Now()
		r, _, err := c.Exchange(msg(fmt.Sprintf("l%d.wild.lab.test", i), dns.TypeA), addr)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[n/2], ds[n*9/10]
}

// TestStreamTor: through the private Tor network (isolation by epoch),
// plain TCP and DoT to unbound and DoT to dnsdist: the record types and
// huge, then 100 queries in a row on the warm circuit, whose median and
// p90 are logged beside a DNSCrypt resolver's (a new Tor stream per
// query), for comparison. Each stream upstream used one connection, hence
// one Tor stream, for everything.
func TestStreamTor(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	wants := backendWants(t, lab)
	ups := slices.DeleteFunc(streamUpstreams(t, lab), func(u streamUpstream) bool { return u.name == "tcp dnsdist" })
	dnscrypt := streamUpstream{name: "dnscrypt go-server", spec: upstream.Spec{Kind: upstream.KindDNSCrypt, Addr: lab.Go,
		ProviderName: lab.ProviderName, ProviderKey: lab.ProviderKey}}
	for _, up := range append(ups, dnscrypt) {
		t.Run(up.name, func(t *testing.T) {
			p := startStreamProxy(t, proxy.Config{Resolvers: []upstream.Spec{up.spec},
				SOCKS:          &proxy.SOCKS{Addr: tor.SOCKS, Isolation: proxy.IsolationEpoch},
				PrivateDomains: []string{"lab.test"}, Timeout: 30 * time.Second})
			if up.spec.Kind == upstream.KindDNSCrypt {
				waitFor(t, "the certificate through Tor", func() bool {
					r, err := query("tcp", p.Addr, "www.lab.test")
					return err == nil && r.Rcode == dns.RcodeSuccess
				})
			} else {
				checkTypes(t, p.Addr, typeCases, []string{"dig"}, wants, nil)
				checkHuge(t, p.Addr)
			}
			median, p90 := latency(t, p.Addr, 100)
			conns := fmt.Sprintf("%d upstream connections", p.connects())
			if up.spec.Kind == upstream.KindDNSCrypt {
				conns = "a Tor stream per query"
			}
			t.Logf("%s through Tor: median %v, p90 %v over 100 queries; %s", up.name,
				median.Round(100*time.Microsecond), p90.Round(100*time.Microsecond), conns)
			if up.spec.Kind != upstream.KindDNSCrypt && up.unbound && p.connects() != 1 {
				t.Errorf("%d connections through Tor, want 1", p.connects())
			}
			if f := p.failures(); len(f) > 0 && up.spec.Kind != upstream.KindDNSCrypt {
				t.Errorf("failed queries:\n%s", strings.Join(f, "\n"))
			}
		})
	}
}

// waitFor polls cond until it holds, failing the test after 60 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStreamOnion: unbound's DoT and plain TCP published as onion
// services in a private Tor network (sharedOnionTor), reached by their .onion names through
// the proxy (the name goes to Tor, never resolved here): answers equal the
// backend's, huge comes whole, and one connection carries everything.
func TestStreamOnion(t *testing.T) {
	lab := sharedLab(t)
	n := sharedOnionTor(t) // "dot" and "dns": unbound's DoT and plain DNS
	wants := backendWants(t, lab)
	some := slices.DeleteFunc(slices.Clone(typeCases), func(tc typeCase) bool {
		return !slices.Contains([]string{"A", "AAAA", "MX", "TXT", "RRSIG", "A with DNSSEC", "NXDOMAIN"}, tc.name)
	})
	for _, up := range []streamUpstream{
		{"tls onion", upstream.Spec{Kind: upstream.KindTLS, Addr: n.OnionAddr("dot"), ServerName: lab.BackendTLSName,
			Pins: tbsPin(t, lab.BackendTLSTBSHash)}, true},
		{"tcp onion", upstream.Spec{Kind: upstream.KindTCP, Addr: n.OnionAddr("dns")}, true},
	} {
		t.Run(up.name, func(t *testing.T) {
			p := startStreamProxy(t, proxy.Config{Resolvers: []upstream.Spec{up.spec},
				SOCKS:          &proxy.SOCKS{Addr: n.SOCKS, Isolation: proxy.IsolationEpoch},
				PrivateDomains: []string{"lab.test"}, Timeout: 60 * time.Second})
			checkTypes(t, p.Addr, some, []string{"dig"}, wants, nil)
			checkHuge(t, p.Addr)
			median, p90 := latency(t, p.Addr, 50)
			t.Logf("%s: median %v, p90 %v over 50 queries; %d upstream connections", up.name,
				median.Round(100*time.Microsecond), p90.Round(100*time.Microsecond), p.connects())
			if p.connects() != 1 {
				t.Errorf("%d connections to the onion service, want 1", p.connects())
			}
			if !strings.Contains(p.log.String(), up.spec.Addr) {
				t.Errorf("the log does not name %s", up.spec.Addr)
			}
			if f := p.failures(); len(f) > 0 {
				t.Errorf("failed queries:\n%s", strings.Join(f, "\n"))
			}
		})
	}
}

// TestStreamStubby compares the proxy's DoT with stubby's, both in front of
// unbound's DoT listener: the same answers for every record type.
func TestStreamStubby(t *testing.T) {
	lab := sharedLab(t)
	st := labtest.StartStubbyTB(t, lab, labtest.StubbyToBackend)
	up := streamUpstreams(t, lab)[2]
	if up.spec.Addr != lab.BackendDoT {
		t.Fatal("not unbound's DoT")
	}
	p := startStreamProxy(t, proxy.Config{Resolvers: []upstream.Spec{up.spec}})
	for _, tc := range append(slices.Clone(typeCases), typeCase{"huge", []string{"huge.lab.test", "TXT"}}) {
		for _, transport := range []string{"+notcp", "+tcp"} {
			args := append([]string{transport, "+bufsize=1232"}, tc.args...)
			ours := runDig(t, "dig", append(at(t, p.Addr), args...)...)
			theirs := runDig(t, "dig", append(at(t, st.Addr), args...)...)
			if ours.Status == "" || ours.Status != theirs.Status || !slices.Equal(ours.Answer, theirs.Answer) ||
				ours.flag("tc") != theirs.flag("tc") {
				t.Errorf("%s %s: proxy %s %v %v, stubby %s %v %v", tc.name, transport, ours.Status, ours.Flags, ours.Answer,
					theirs.Status, theirs.Flags, theirs.Answer)
			}
		}
	}
	if p.connects() != 1 {
		t.Errorf("%d connections, want 1", p.connects())
	}
}

// TestStreamBatchOnNewConnection: three queries sent together as a new
// connection opens reach each DoT server in one write: all are answered
// on that one connection. dnsdist 1.7.3 answered only the first query of
// a TLS record holding several (then closed the connection 2 s later),
// until the upstream gave each query a record of its own.
func TestStreamBatchOnNewConnection(t *testing.T) {
	lab := sharedLab(t)
	for _, up := range streamUpstreams(t, lab) {
		t.Run(up.name, func(t *testing.T) {
			for round := range 5 {
				u := startUpstream(t, up.spec)
				r := &collect{ch: make(chan collected, 3)}
				id := upstream.NewIdentity(egress.Credentials{}, nil, time.Now())
				for i := range 3 {
					pkt, _ := msg(fmt.Sprintf("r%d-%d.wild.lab.test", round, i), dns.TypeA).Pack()
					u.Exchange(&upstream.Query{Msg: pkt, Limit: 512, Deadline: time.Now().Add(10 * time.Second),
						Identity: id, Done: r})
				}
				for range 3 {
					if m := r.next(t).msg(t); len(m.Answer) != 1 {
						t.Errorf("answer %v", m)
					}
				}
				if d := u.(*upstream.Stream).Dials.Load(); d != 1 {
					t.Errorf("round %d: %d connections for 3 queries, want 1", round, d)
				}
			}
		})
	}
}

// TestStreamUnboundInFront: unbound validates DNSSEC through the proxy on
// each stream upstream (answers carry AD), over UDP and with tcp-upstream.
func TestStreamUnboundInFront(t *testing.T) {
	lab := sharedLab(t)
	if lab.TrustAnchorDS == "" {
		t.Fatal("the lab's zone is not signed")
	}
	for _, up := range streamUpstreams(t, lab) {
		for _, extra := range [][]string{nil, {"tcp-upstream: yes"}} {
			t.Run(fmt.Sprint(up.name, extra), func(t *testing.T) {
				p := startStreamProxy(t, proxy.Config{Resolvers: []upstream.Spec{up.spec}})
				ub := startUnbound(t, lab.TrustAnchorDS, p.Addr, extra...)
				for _, q := range [][]string{{"www.lab.test", "A"}, {"lab.test", "MX"}, {"huge.lab.test", "TXT"}, {"nosuch.lab.test", "A"}} {
					r := runDig(t, "dig", append(at(t, ub), append([]string{"+dnssec", "+tcp"}, q...)...)...)
					if !r.flag("ad") || (r.Status != "NOERROR" && r.Status != "NXDOMAIN") {
						t.Errorf("%v through unbound: status %s flags %v (want AD)\n%s", q, r.Status, r.Flags, r.Out)
					}
				}
				if f := p.failures(); len(f) > 0 {
					t.Errorf("failed queries:\n%s", strings.Join(f, "\n"))
				}
			})
		}
	}
}

// TestStreamRealFaults, against dnsdist's DoT listener: the server closes
// the idle connection (its 2 s timeout), and the next query reconnects;
// the server stops (SIGSTOP): the query gets SERVFAIL at its deadline, the
// stalled connection is dropped, and once the server resumes a new one
// answers; the server dies (SIGKILL): SERVFAIL at once, "refused".
func TestStreamRealFaults(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true, NoDNSSEC: true})
	up := streamUpstreams(t, lab)[3]
	if up.spec.Addr != lab.DoT {
		t.Fatal("not dnsdist's DoT")
	}
	p := startStreamProxy(t, proxy.Config{Resolvers: []upstream.Spec{up.spec}, Timeout: 2 * time.Second})
	ask := func(rcode int, within time.Duration) {
		t.Helper()
		start := time.Now()
		c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
		r, _, err := c.Exchange(msg("www.lab.test", dns.TypeA), p.Addr)
		took := time.Since(start)
		if err != nil || r.Rcode != rcode {
			t.Fatalf("got %v, %v after %v; want %s", r, err, took, dns.RcodeToString[rcode])
		}
		if took > within {
			t.Errorf("%s after %v, want within %v", dns.RcodeToString[rcode], took, within)
		}
	}
	ask(dns.RcodeSuccess, 2*time.Second)
	waitFor(t, "dnsdist to close the idle connection", func() bool { return ownConns(t, lab.DoT) == 0 })
	ask(dns.RcodeSuccess, 2*time.Second)
	if got := p.connects(); got != 2 {
		t.Errorf("%d connections, want 2 (one after dnsdist closed the first)", got)
	}

	resume := stopLab(t, lab, "dnsdist")
	ask(dns.RcodeServerFailure, 2*time.Second+time.Second)
	waitFor(t, "the stalled connection to be dropped", func() bool { return ownConns(t, lab.DoT) == 0 })
	resume()
	ask(dns.RcodeSuccess, 2*time.Second)
	if !strings.Contains(p.log.String(), "kind=timeout") {
		t.Errorf("no timeout logged:\n%s", p.log)
	}

	killWait(t, labPid(t, lab, "dnsdist"), "dnsdist")
	for range 3 {
		ask(dns.RcodeServerFailure, time.Second)
	}
	waitFor(t, "a refused connection in the log", func() bool { return strings.Contains(p.log.String(), "kind=refused") })
}

// cpuTime returns the user+system CPU time of process pid so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (in parentheses): utime and stime are
	// the 12th and 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// TestStreamLoad runs dnsperf (the lab's query file, as fast as it goes,
// 5 s) through the proxy's DoT and plain TCP upstreams to unbound, and
// through stubby to the same DoT listener, in one run: no query may be
// lost through the proxy. It logs queries per second and CPU time per
// query (the proxy: this process, which runs nothing else meanwhile).
func TestStreamLoad(t *testing.T) {
	lab := sharedLab(t)
	st := labtest.StartStubbyTB(t, lab, labtest.StubbyToBackend)
	_, port, _ := net.SplitHostPort(st.Addr)
	stubbyPid := labPid(t, lab, "stubby-"+port)
	queries := filepath.Join(labtest.RepoRoot(), "tests", "lab", "queries.txt")
	ups := streamUpstreams(t, lab)
	for _, run := range []struct {
		name string
		spec *upstream.Spec
	}{{"tls unbound", &ups[2].spec}, {"tcp unbound", &ups[0].spec}, {"stubby", nil}} {
		addr, pid := st.Addr, stubbyPid
		if run.spec != nil {
			addr, pid = startStreamProxy(t, proxy.Config{Resolvers: []upstream.Spec{*run.spec}}).Addr, os.Getpid()
		}
		cpu := cpuTime(t, pid)
		res := dnsperf(t, addr, "-d", queries, "-l", "5", "-t", "5")
		used := cpuTime(t, pid) - cpu
		t.Logf("%s: %d sent, %d completed, %d lost, %.0f qps, %.1f µs CPU per query, rcodes %v", run.name,
			res.sent, res.completed, res.lost, float64(res.completed)/5, float64(used.Microseconds())/float64(max(res.completed, 1)), res.rcodes)
		if run.spec != nil && (res.lost != 0 || res.completed == 0) {
			t.Errorf("%s: %d of %d queries lost\n%s", run.name, res.lost, res.sent, res.out)
		}
	}
}
