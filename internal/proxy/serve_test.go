package proxy

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

func TestLargeAnswers(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{})

	// Without EDNS over UDP: truncated to 512 bytes, TC set, no OPT.
	r, err := rp.ask(t, "udp", query("size-3000.example", dns.TypeTXT))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || r.Len() > 512 || r.IsEdns0() != nil {
		t.Fatalf("no EDNS: truncated=%v len=%d opt=%v", r.Truncated, r.Len(), r.IsEdns0())
	}

	// EDNS 4096 over UDP: the whole ~3 KB answer.
	m := query("size-3000.example", dns.TypeTXT)
	m.SetEdns0(4096, true)
	r, err = rp.ask(t, "udp", m)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 3 || r.IsEdns0() == nil || !r.IsEdns0().Do() {
		t.Fatalf("EDNS 4096: truncated=%v answers=%d opt=%v", r.Truncated, len(r.Answer), r.IsEdns0())
	}

	// Over TCP: 13 KB arrive whole.
	r, err = rp.ask(t, "tcp", query("size-13000.example", dns.TypeTXT))
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 13 || r.Len() < 13000 {
		t.Fatalf("TCP: truncated=%v answers=%d len=%d", r.Truncated, len(r.Answer), r.Len())
	}
	// An EDNS 1232 client whose answer cannot fit gets TC without the
	// proxy going over TCP first (UDP could bring all it can take).
	before := len(srv.Queries())
	m = query("size-3000.example", dns.TypeTXT)
	m.SetEdns0(1232, false)
	for range 20 { // let the padding cap grow to the client's size
		if r, err = rp.ask(t, "udp", m); err != nil {
			t.Fatal(err)
		}
	}
	if !r.Truncated || r.Len() > 1232 {
		t.Fatalf("EDNS 1232: truncated=%v len=%d", r.Truncated, r.Len())
	}
	var tcp int
	for _, q := range srv.Queries()[before:] {
		if q.Transport == "tcp" {
			tcp++
		}
	}
	if tcp > 15 {
		t.Fatalf("%d of 20 queries went over TCP upstream; the padding cap did not grow", tcp)
	}
}

func TestEDNSRewrite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int
		clientOPT uint16 // 0: none
		want      uint16 // 0: no OPT upstream
	}{
		{"default adds 1252", 0, 0, 1252},
		{"4096 rewrites the client's", 4096, 1232, 4096},
		{"512 disables", 512, 0, 0},
		{"512 keeps the client's", 512, 1400, 1400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil)
			rp := startProxy(t, srv, Config{EDNSPayloadSize: tc.size})
			m := query("www.example", dns.TypeA)
			if tc.clientOPT != 0 {
				m.SetEdns0(tc.clientOPT, true)
			}
			r, err := rp.ask(t, "udp", m)
			if err != nil || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("%v %v", r, err)
			}
			up := srv.Queries()[0].Msg.IsEdns0()
			switch {
			case tc.want == 0 && up != nil:
				t.Fatalf("upstream OPT %v, want none", up)
			case tc.want != 0 && (up == nil || up.UDPSize() != tc.want):
				t.Fatalf("upstream OPT %v, want size %d", up, tc.want)
			case tc.clientOPT != 0 && !up.Do():
				t.Fatal("DO bit lost")
			}
		})
	}
}

func TestTCPOnly(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	srv.SetFaults(dnscrypttest.Faults{NoCertUDP: true}) // certificates must come over TCP
	rp := startProxy(t, srv, Config{TCPOnly: true})

	m := query("www.example", dns.TypeA)
	m.Id = 4242
	r, err := rp.ask(t, "udp", m)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || !r.Response || !r.RecursionAvailable || r.Id != 4242 || len(r.Answer) != 0 {
		t.Fatalf("UDP under --tcp-only: %v", r)
	}
	if n := len(srv.Queries()); n != 0 {
		t.Fatalf("UDP query under --tcp-only went upstream (%d queries)", n)
	}
	// dig's behaviour: retry over TCP.
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err = c.Exchange(m, rp.addr)
	if err != nil || !r.Truncated {
		t.Fatal(r, err)
	}
	r, err = rp.ask(t, "tcp", m)
	if err != nil || len(r.Answer) != 1 || r.Truncated {
		t.Fatalf("TCP under --tcp-only: %v %v", r, err)
	}
	for _, q := range srv.Queries() {
		if q.Transport != "tcp" {
			t.Fatalf("upstream over %s under --tcp-only", q.Transport)
		}
	}
}

// TestPipelining sends many queries on one TCP connection without waiting;
// slow ones must not hold back fast ones, and every answer matches its ID.
func TestPipelining(t *testing.T) {
	slow := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		if q.Question[0].Name == "slow.example." {
			time.Sleep(300 * time.Millisecond)
		}
		dnscrypttest.Zone{}.ServeDNS(w, q)
	})
	srv := dnscrypttest.NewServer(t, slow)
	rp := startProxy(t, srv, Config{})
	c, err := net.Dial("tcp", rp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const n = 30
	for i := range n {
		name := "fast.example"
		if i == 0 {
			name = "slow.example"
		}
		m := query(name, dns.TypeA)
		m.Id = uint16(1000 + i)
		b, _ := m.Pack()
		c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(b))))
		c.Write(b)
	}
	seen := map[uint16]bool{}
	var order []uint16
	for range n {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatalf("after %d answers: %v", len(seen), err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		want := "fast.example."
		if r.Id == 1000 {
			want = "slow.example."
		}
		if r.Question[0].Name != want || len(r.Answer) != 1 || seen[r.Id] {
			t.Fatalf("answer %d: %v", r.Id, r)
		}
		seen[r.Id] = true
		order = append(order, r.Id)
	}
	if order[0] == 1000 {
		t.Fatal("the slow query's answer came first: answers are not written as they complete")
	}
}

// TestFaults: a misbehaving resolver gets the client SERVFAIL within the
// deadline, never a hang, and leaves no goroutine behind, with the static
// key and with ephemeral keys (a new identity for every query).
func TestFaults(t *testing.T) {
	for _, ephemeral := range []bool{false, true} {
		t.Run(map[bool]string{false: "static key", true: "ephemeral keys"}[ephemeral], func(t *testing.T) {
			testFaults(t, ephemeral)
		})
	}
}

func testFaults(t *testing.T, ephemeral bool) {
	for _, tc := range []struct {
		name string
		f    dnscrypttest.Faults
	}{
		{"wrong nonce", dnscrypttest.Faults{WrongNonce: true}},
		{"wrong magic", dnscrypttest.Faults{WrongMagic: true}},
		{"bad padding", dnscrypttest.Faults{BadPadding: true}},
		{"bad tag", dnscrypttest.Faults{BadTag: true}},
		{"garbage", dnscrypttest.Faults{Garbage: true}},
		{"silent", dnscrypttest.Faults{Silent: true}},
		{"slow", dnscrypttest.Faults{Delay: 5 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			srv := dnscrypttest.NewServer(t, nil)
			const timeout = 800 * time.Millisecond
			rp := startProxy(t, srv, Config{Timeout: timeout, EphemeralKeys: ephemeral})
			srv.SetFaults(tc.f)
			for _, network := range []string{"udp", "tcp"} {
				start := time.Now()
				r, err := rp.ask(t, network, query("www.example", dns.TypeA))
				if err != nil {
					t.Fatalf("%s: no answer: %v", network, err)
				}
				if r.Rcode != dns.RcodeServerFailure {
					t.Fatalf("%s: got %v, want SERVFAIL", network, r)
				}
				if el := time.Since(start); el > timeout+slack {
					t.Fatalf("%s: SERVFAIL after %v, deadline %v", network, el, timeout)
				}
			}
			if err := rp.stop(); err != nil {
				t.Fatal(err)
			}
			srv.Close()
			checkGoroutines(t, base)
		})
	}
}

// checkGoroutines waits for the goroutine count to come back to base.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

// TestMaxActiveRequests: with a silent resolver the set fills up, new
// requests are shed while the ones in flight are fresh, the stale ones are
// evicted for new ones, and when the resolver comes back the proxy answers
// again by itself.
func TestMaxActiveRequests(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{MaxActiveRequests: 5, Timeout: 3 * time.Second})
	srv.SetFaults(dnscrypttest.Faults{Silent: true})
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to, _ := net.ResolveUDPAddr("udp", rp.addr)
	for i := range 20 {
		m := query("www.example", dns.TypeA)
		m.Id = uint16(i)
		b, _ := m.Pack()
		c.WriteTo(b, to)
	}
	waitFor(t, func() bool { return rp.p.sheds.Load() == 15 })
	if ev, n := rp.p.evictions.Load(), rp.p.active.len(); ev != 0 || n != 5 {
		t.Fatalf("evictions %d, active %d; want 0 and 5", ev, n)
	}
	// The resolver comes back once it has ignored the five.
	waitFor(t, func() bool { return len(srv.Queries()) == 5 })
	srv.SetFaults(dnscrypttest.Faults{})
	waitFor(t, func() bool { return rp.p.active.oldestAge() >= rp.p.staleAge() })
	r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
	if err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("after recovery: %v %v", r, err)
	}
	if ev := rp.p.evictions.Load(); ev != 1 {
		t.Fatalf("evictions %d after recovery, want 1", ev)
	}
}

// TestRotation: the resolver rotates its certificate while queries run;
// the proxy picks up the new serial and no query fails.
func TestRotation(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil, dnscrypttest.CertSpec{Serial: 1})
	rp := startProxy(t, srv, Config{CertRefresh: 200 * time.Millisecond})
	var failed, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := rp.ask(t, "udp", query("www.example", dns.TypeA))
				total.Add(1)
				if err != nil || r.Rcode != dns.RcodeSuccess {
					failed.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := srv.SetCerts(dnscrypttest.CertSpec{Serial: 2, Construction: dnscrypt.XSalsa20Poly1305}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c := dnscryptOf(rp.p).Cert(); c != nil && c.Serial == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if c := dnscryptOf(rp.p).Cert(); c.Serial != 2 {
		t.Fatalf("serial %d in use, want 2", c.Serial)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d queries failed during the rotation", failed.Load(), total.Load())
	}
	qs := srv.Queries()
	if last := qs[len(qs)-1]; last.Size == 0 || last.ClientMagic == qs[0].ClientMagic {
		t.Fatal("queries after the rotation still use the old certificate")
	}
}

func TestEphemeralKeys(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{EphemeralKeys: true})
	for range 5 {
		if _, err := rp.ask(t, "udp", query("www.example", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
	}
	keys := map[[32]byte]bool{}
	nonces := map[[12]byte]bool{}
	for _, q := range srv.Queries() {
		keys[q.ClientPK] = true
		nonces[q.Nonce] = true
	}
	if len(keys) != 5 || len(nonces) != 5 {
		t.Fatalf("%d keys and %d nonces for 5 queries", len(keys), len(nonces))
	}

	// Without ephemeral keys: one key for all queries.
	srv2 := dnscrypttest.NewServer(t, nil)
	rp2 := startProxy(t, srv2, Config{})
	for range 3 {
		if _, err := rp2.ask(t, "tcp", query("www.example", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
	}
	qs := srv2.Queries()
	if qs[0].ClientPK != qs[1].ClientPK || qs[1].ClientPK != qs[2].ClientPK {
		t.Fatal("static key pair changed between queries")
	}
}

// TestMalformedQueriesDropped: packets without a header, and responses,
// get no answer at all (the first answer on the socket is the one to the
// valid query sent after them) and nothing goes upstream.
func TestMalformedQueriesDropped(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{})
	c, err := net.Dial("udp", rp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp := query("www.example", dns.TypeA)
	resp.Response = true
	rb, _ := resp.Pack()
	for _, b := range [][]byte{{}, {1, 2, 3}, make([]byte, 11), rb, append(rb[:12:12], 0xc0, 0xff)} {
		c.Write(b)
	}
	m := query("www.example", dns.TypeA)
	m.Id = 777
	b, _ := m.Pack()
	c.Write(b)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil || r.Id != 777 || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("first answer: %v %v; want the answer to query 777 (nothing to the garbage before it)", r, err)
	}
	if len(srv.Queries()) != 1 {
		t.Fatalf("garbage went upstream: %d queries", len(srv.Queries()))
	}
}

// TestNoCertificateYet: Serve stops cleanly when cancelled while a
// certificate fetch hangs on a silent resolver, and closes its listeners.
func TestNoCertificateYet(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	srv.SetFaults(dnscrypttest.Faults{NoCertUDP: true, NoCertTCP: true})
	p, err := New(Config{Resolvers: []upstream.Spec{spec(srv)}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	pc, ln := listenPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := p.Serve(ctx, pc, ln); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.ListenPacket("udp", pc.LocalAddr().String()); err != nil {
		t.Fatalf("listener not closed: %v", err)
	}
}

// TestTCPConnectionCap: when every TCP client has a query in flight and
// the cap (here 16, the floor) is reached, a new connection is closed at
// once, so clients cannot pile up goroutines; once the queries are
// answered, their idle connections make room for new clients, the one idle
// the longest first.
func TestTCPConnectionCap(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{MaxActiveRequests: 16, Timeout: 2 * time.Second})
	if rp.p.conns.max != 16 {
		t.Fatalf("connection cap %d, want 16", rp.p.conns.max)
	}
	srv.SetFaults(dnscrypttest.Faults{Delay: time.Hour})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	m := query("www.example", dns.TypeA)
	b, _ := m.Pack()
	framed := append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
	for range 16 {
		c, err := net.Dial("tcp", rp.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if _, err := c.Write(framed); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return rp.p.conns.n.Load() == 16 && rp.p.active.len() == 16 })
	extra, err := net.Dial("tcp", rp.addr)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection over the cap with every client busy: read %d, %v; want EOF", n, err)
	}
	extra.Close()
	// The queries time out (SERVFAIL): the connections are idle now, and a
	// new client gets in.
	waitFor(t, func() bool { return rp.p.active.len() == 0 })
	if r, err := rp.ask(t, "tcp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("a new client once the others are idle: %v %v; want SERVFAIL (the resolver is slow)", r, err)
	}
}
