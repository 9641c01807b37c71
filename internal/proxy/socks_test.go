package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/socks5test"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// TestSOCKSEverythingThrough: with a SOCKS proxy, certificates and queries
// (from UDP and TCP clients) all go through it, over TCP.
func TestSOCKSEverythingThrough(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	srv.SetFaults(dnscrypttest.Faults{NoCertUDP: true})
	socks := socks5test.NewServer(t, socks5test.Config{User: "u", Password: "p"})
	rp := startProxy(t, srv, Config{SOCKS: &SOCKS{Addr: socks.Addr, User: "u", Password: "p"}})
	if dnscryptOf(rp.p).UDPSockets() {
		t.Fatal("an upstream UDP socket exists in SOCKS mode")
	}
	for _, network := range []string{"udp", "tcp"} {
		m := query("size-3000.example", dns.TypeTXT)
		m.SetEdns0(4096, false)
		r, err := rp.ask(t, network, m)
		if err != nil || r.Rcode != dns.RcodeSuccess || r.Truncated || len(r.Answer) != 3 {
			t.Fatalf("%s: %v %v", network, r, err)
		}
	}
	// The 3 KB answer is truncated for a UDP client without EDNS.
	r, err := rp.ask(t, "udp", query("size-3000.example", dns.TypeTXT))
	if err != nil || !r.Truncated || r.Len() > 512 {
		t.Fatalf("UDP without EDNS: %v %v", r, err)
	}
	reqs := socks.Requests()
	if len(reqs) != 4 { // the certificate, then three queries
		t.Fatalf("%d SOCKS sessions, want 4", len(reqs))
	}
	for _, rq := range reqs {
		if rq.Target != srv.Addr || rq.User != "u" || rq.Password != "p" {
			t.Fatalf("SOCKS session %+v", rq)
		}
	}
	for _, q := range srv.Queries() {
		if q.Transport != "tcp" {
			t.Fatal("a query reached the resolver over UDP")
		}
	}
}

// TestSOCKSHostName: a resolver named by host name goes to SOCKS as that
// name; nothing is looked up locally.
func TestSOCKSHostName(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	_, port, _ := net.SplitHostPort(srv.Addr)
	socks := socks5test.NewServer(t, socks5test.Config{Hosts: map[string]string{"resolver.invalid": "127.0.0.1"}})
	byName := spec(srv)
	byName.Addr = "resolver.invalid:" + port
	rp := startProxy(t, srv, Config{Resolvers: []upstream.Spec{byName}, SOCKS: &SOCKS{Addr: socks.Addr}})
	if r, err := rp.ask(t, "udp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("%v %v", r, err)
	}
	for _, rq := range socks.Requests() {
		if rq.Target != "resolver.invalid:"+port {
			t.Fatalf("SOCKS target %q, want the name", rq.Target)
		}
	}
	// A provider name no certificate query could carry is a configuration
	// error, not a fetch that fails forever.
	badName := spec(srv)
	badName.ProviderName = "2.dnscrypt-cert..example"
	if _, err := New(Config{Resolvers: []upstream.Spec{badName}}); err == nil {
		t.Fatal("New accepted a provider name with an empty label")
	}
	// Without SOCKS a name is refused: it would need a local lookup.
	byName.Addr = "resolver.invalid:443"
	if _, err := New(Config{Resolvers: []upstream.Spec{byName}}); err == nil {
		t.Fatal("New accepted a host name without SOCKS")
	}
}

func TestSOCKSOptimisticData(t *testing.T) {
	for _, optimistic := range []bool{true, false} {
		srv := dnscrypttest.NewServer(t, nil)
		socks := socks5test.NewServer(t, socks5test.Config{HoldReply: 150 * time.Millisecond})
		rp := startProxy(t, srv, Config{SOCKS: &SOCKS{Addr: socks.Addr, OptimisticData: optimistic}})
		if r, err := rp.ask(t, "udp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("optimistic=%v: %v %v", optimistic, r, err)
		}
		reqs := socks.Requests()
		if len(reqs) != 2 {
			t.Fatalf("%d sessions", len(reqs))
		}
		if len(reqs[0].Early) != 0 {
			t.Fatal("certificate query sent before the CONNECT reply")
		}
		if q := reqs[1].Early; optimistic != (len(q) > 0) {
			t.Fatalf("optimistic=%v: %d bytes before the CONNECT reply", optimistic, len(q))
		}
	}
}

// TestIsolation: SOCKS credentials and client keys change together, per
// epoch or per query; none keeps one identity.
func TestIsolation(t *testing.T) {
	const epoch = 400 * time.Millisecond
	for _, tc := range []struct {
		iso       Isolation
		ephemeral bool
		// distinct (user, key) pairs expected among 4 queries: 2 before
		// and 2 after an epoch boundary.
		users, keys int
	}{
		{IsolationNone, false, 1, 1},
		{IsolationNone, true, 1, 4},
		{IsolationEpoch, false, 2, 2},
		{IsolationEpoch, true, 2, 4},
		{IsolationQuery, false, 4, 4},
	} {
		t.Run(tc.iso.String(), func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil)
			socks := socks5test.NewServer(t, socks5test.Config{AnyCredentials: true})
			rp := startProxy(t, srv, Config{EphemeralKeys: tc.ephemeral,
				SOCKS: &SOCKS{Addr: socks.Addr, Isolation: tc.iso, Epoch: epoch}})
			for i := range 4 {
				if i == 2 {
					time.Sleep(epoch + 50*time.Millisecond)
				}
				if r, err := rp.ask(t, "udp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
					t.Fatalf("%v %v", r, err)
				}
			}
			reqs := socks.Requests()[1:] // skip the certificate fetch
			qs := srv.Queries()
			users, keys := map[string]bool{}, map[[32]byte]bool{}
			userOfKey := map[[32]byte]string{}
			for i, q := range qs {
				u := reqs[i].User
				users[u], keys[q.ClientPK] = true, true
				if prev, ok := userOfKey[q.ClientPK]; ok && prev != u {
					t.Fatal("one client key under two SOCKS identities: circuits linkable by key")
				}
				userOfKey[q.ClientPK] = u
			}
			if len(users) != tc.users || len(keys) != tc.keys {
				t.Fatalf("%d users and %d keys, want %d and %d", len(users), len(keys), tc.users, tc.keys)
			}
			if tc.iso != IsolationNone && socks.Requests()[0].User == reqs[0].User {
				t.Fatal("the certificate fetch shares the queries' SOCKS identity")
			}
		})
	}
}

// TestSOCKSAuthentication: the default options (isolation by epoch) work
// with every kind of SOCKS server. The greeting offers "no authentication"
// and username/password; Tor (any credentials) picks the latter and sees
// made-up credentials; a server without authentication picks the former
// and a warning says once that circuits cannot be isolated; configured
// credentials are an account, sent as they are, with the same warning
// when isolation was asked for.
func TestSOCKSAuthentication(t *testing.T) {
	const noIsolation = "no isolation by credentials"
	for _, tc := range []struct {
		name    string
		server  socks5test.Config
		unix    bool
		socks   SOCKS
		methods []byte
		user    string // "" with no authentication; "*" made up
		warn    string // the warning's reason, or "" for none
	}{
		{"Tor", socks5test.Config{AnyCredentials: true}, false, SOCKS{Isolation: IsolationEpoch}, []byte{0, 2}, "*", ""},
		{"Tor on a Unix socket", socks5test.Config{AnyCredentials: true}, true, SOCKS{Isolation: IsolationEpoch}, []byte{0, 2}, "*", ""},
		{"no authentication", socks5test.Config{}, false, SOCKS{Isolation: IsolationEpoch}, []byte{0, 2}, "", "it takes no authentication"},
		{"no authentication, query isolation", socks5test.Config{}, false, SOCKS{Isolation: IsolationQuery}, []byte{0, 2}, "",
			"it takes no authentication"},
		{"no authentication, no isolation", socks5test.Config{}, false, SOCKS{}, []byte{0}, "", ""},
		{"account", socks5test.Config{User: "lab", Password: "pw"}, false, SOCKS{User: "lab", Password: "pw", Isolation: IsolationEpoch},
			[]byte{0, 2}, "lab", "an account on it"},
		{"account, no isolation", socks5test.Config{User: "lab", Password: "pw"}, false, SOCKS{User: "lab", Password: "pw"},
			[]byte{0, 2}, "lab", ""},
		{"account not required", socks5test.Config{}, false, SOCKS{User: "lab", Password: "pw", Isolation: IsolationEpoch},
			[]byte{0, 2}, "", "an account on it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil)
			listen := socks5test.NewServer
			if tc.unix {
				listen = socks5test.NewUnixServer
			}
			socks := listen(t, tc.server)
			logs := &logtest.Buffer{}
			sc := tc.socks
			sc.Addr = socks.Addr
			rp := startProxy(t, srv, Config{SOCKS: &sc, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			for range 3 {
				if r, err := rp.ask(t, "udp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
					t.Fatalf("%v %v", r, err)
				}
			}
			reqs := socks.Requests()
			if len(reqs) != 4 {
				t.Fatalf("%d SOCKS sessions, want 4 (the certificate and 3 queries)", len(reqs))
			}
			for _, rq := range reqs {
				if rq.Err != nil || !bytes.Equal(rq.Methods, tc.methods) {
					t.Fatalf("session %+v, want methods %x offered", rq, tc.methods)
				}
				if made := rq.User != "" && rq.User != tc.socks.User; tc.user == "*" && !made || tc.user != "*" && rq.User != tc.user {
					t.Fatalf("SOCKS user %q, want %q", rq.User, tc.user)
				}
			}
			if tc.user == "*" && reqs[1].User == reqs[0].User {
				t.Fatal("the certificate fetch shares the queries' SOCKS identity")
			}
			warnings := logs.Count("level=WARN msg=\"SOCKS proxy " + socks.Addr + ": " + noIsolation)
			if tc.warn == "" && warnings != 0 || tc.warn != "" && (warnings != 1 || logs.Count(tc.warn) != 1) {
				t.Fatalf("%d warnings, want 1 saying %q:\n%s", warnings, tc.warn, logs.String())
			}
		})
	}
}

// TestSOCKSAuthenticationRefused: a server that wants an account gets no
// made-up credentials past it, and the log says what to do.
func TestSOCKSAuthenticationRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		socks SOCKS
		want  string
	}{
		{"isolation", SOCKS{Isolation: IsolationEpoch}, "rejected the credentials made up for isolation: it wants an account (give USER:PASS in the proxy URL)"},
		{"no isolation", SOCKS{}, "requires authentication (give USER:PASS in the proxy URL)"},
		{"wrong password", SOCKS{User: "lab", Password: "wrong"}, "rejected the credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil)
			socks := socks5test.NewServer(t, socks5test.Config{User: "lab", Password: "pw"})
			tc.socks.Addr = socks.Addr
			logs := &logtest.Buffer{}
			p, err := New(Config{Resolvers: []upstream.Spec{spec(srv)}, SOCKS: &tc.socks, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = p.FetchCerts(ctx)
			if err == nil || !strings.Contains(err.Error(), "socks5: proxy "+socks.Addr+" "+tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestSOCKSFaults: SOCKS refusing, hanging or down gives SERVFAIL within
// the deadline, and service resumes when SOCKS is back.
func TestSOCKSFaults(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	socks := socks5test.NewServer(t, socks5test.Config{})
	const timeout = time.Second
	rp := startProxy(t, srv, Config{Timeout: timeout, SOCKS: &SOCKS{Addr: socks.Addr}})
	for _, tc := range []struct {
		name string
		c    socks5test.Config
	}{
		{"refused", socks5test.Config{Refuse: 5}},
		{"host unreachable", socks5test.Config{Refuse: 4}},
		{"silent", socks5test.Config{Silent: true}},
	} {
		socks.Set(tc.c)
		start := time.Now()
		r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
		if err != nil || r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("%s: %v %v", tc.name, r, err)
		}
		if el := time.Since(start); el > timeout+slack {
			t.Fatalf("%s: SERVFAIL after %v", tc.name, el)
		}
	}
	socks.Set(socks5test.Config{})
	if r, err := rp.ask(t, "tcp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("after recovery: %v %v", r, err)
	}
	// SOCKS down: nothing listens.
	socks.Close()
	start := time.Now()
	r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
	if err != nil || r.Rcode != dns.RcodeServerFailure || time.Since(start) > timeout+slack {
		t.Fatalf("SOCKS down: %v %v after %v", r, err, time.Since(start))
	}
}

// TestSOCKSBeforeCertificate: through SOCKS the proxy answers at once,
// SERVFAIL while it has no certificate (Tor still bootstrapping), and
// serves as soon as one arrives, hurried by the waiting clients rather than
// the backoff.
func TestSOCKSBeforeCertificate(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	socks := socks5test.NewServer(t, socks5test.Config{Refuse: 1}) // "Tor" not ready
	ready := make(chan struct{})
	p, err := New(Config{Resolvers: []upstream.Spec{spec(srv)}, Logger: testLogger(t), Timeout: time.Second,
		SOCKS: &SOCKS{Addr: socks.Addr}, OnReady: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	pc, ln := listenPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, pc, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-ready
	rp := &running{p: p, addr: pc.LocalAddr().String()}
	for range 3 {
		start := time.Now()
		r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
		if err != nil || r.Rcode != dns.RcodeServerFailure || time.Since(start) > slack {
			t.Fatalf("before the certificate: %v %v after %v", r, err, time.Since(start))
		}
	}
	// Let the backoff grow, then bring "Tor" up: the next client hurries
	// the certificate fetch.
	time.Sleep(2 * time.Second)
	socks.Set(socks5test.Config{})
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
		if err == nil && r.Rcode == dns.RcodeSuccess {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer 5 s after SOCKS came back: %v %v", r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
