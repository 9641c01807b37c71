package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// result is the outcome of one query.
type result struct {
	q      *Query
	answer []byte
	err    error
}

// asker sends queries through a Stream and collects their outcomes,
// checking that each query ends exactly once.
type asker struct {
	t       testing.TB
	u       *Stream
	id      *Identity
	results chan result
}

func (a *asker) Receive(q *Query, answer []byte, err error) {
	a.results <- result{q, bytes.Clone(answer), err}
}

// newStream returns a running Stream of kind to addr (server name
// "dns.test", no pins unless mod adds some) and an asker on it.
func newStream(t testing.TB, kind Kind, addr string, mod func(*Spec, *Options)) (*Stream, *asker) {
	t.Helper()
	spec := Spec{Kind: kind, Addr: addr, ServerName: "dns.test"}
	opts := Options{Dialer: egress.Direct(), Timeout: 5 * time.Second}
	if mod != nil {
		mod(&spec, &opts)
	}
	up, err := New(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	u := up.(*Stream)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { u.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		u.Close()
	})
	return u, &asker{t: t, u: u, id: NewIdentity(egress.Credentials{}, nil, time.Now()), results: make(chan result, 4096)}
}

// withPin makes a TLS Stream trust cert's pin.
func withPin(pin [32]byte) func(*Spec, *Options) {
	return func(s *Spec, _ *Options) { s.Pins = [][32]byte{pin} }
}

// streamQuery returns a query for name, type A, with the client ID id, and an
// OPT record (1232) if withOPT.
func streamQuery(t testing.TB, name string, id uint16, withOPT bool) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.Id = id
	if withOPT {
		m.SetEdns0(1232, false)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// send starts a query for name with the client ID id.
func (a *asker) send(name string, id uint16, timeout time.Duration) *Query {
	q := &Query{Msg: streamQuery(a.t, name, id, true), Limit: 1232, Deadline: time.Now().Add(timeout),
		Identity: a.id, Done: a}
	a.u.Exchange(q)
	return q
}

// wait collects n outcomes.
func (a *asker) wait(n int) map[*Query]result {
	a.t.Helper()
	got := make(map[*Query]result, n)
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case r := <-a.results:
			if _, dup := got[r.q]; dup {
				a.t.Fatalf("query %x finished twice", r.q.Msg)
			}
			got[r.q] = r
		case <-timeout:
			a.t.Fatalf("got %d outcomes, want %d", len(got), n)
		}
	}
	return got
}

// one waits for the outcome of q.
func (a *asker) one(q *Query) result {
	a.t.Helper()
	r, ok := a.wait(1)[q]
	if !ok {
		a.t.Fatal("the outcome of another query")
	}
	return r
}

// noMore checks that no query ends within a short while (all did).
func (a *asker) noMore() {
	a.t.Helper()
	select {
	case r := <-a.results:
		a.t.Fatalf("an extra outcome: %x %v", r.answer, r.err)
	case <-time.After(50 * time.Millisecond):
	}
}

// checkStreamAnswer checks that r answers its query: no error, the client's
// ID, the query's name, one A record.
func checkStreamAnswer(t testing.TB, r result) *dns.Msg {
	t.Helper()
	if r.err != nil {
		t.Fatalf("query %x: %v", r.q.Msg[:2], r.err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(r.answer); err != nil {
		t.Fatalf("answer %x: %v", r.answer, err)
	}
	q := new(dns.Msg)
	q.Unpack(r.q.Msg)
	if m.Id != q.Id || len(m.Question) != 1 || m.Question[0].Name != q.Question[0].Name || len(m.Answer) == 0 {
		t.Fatalf("answer %v to query %v", m, q)
	}
	if !r.q.OverTCP {
		t.Errorf("OverTCP not set")
	}
	return m
}

var kinds = []Kind{KindTCP, KindTLS}

// server starts a streamServer for kind (TLS: a self-signed certificate
// for dns.test) and returns it with the options that pin its certificate.
func server(t testing.TB, kind Kind, handle func(*serverConn, *dns.Msg, []byte)) (*streamServer, func(*Spec, *Options)) {
	t.Helper()
	if kind == KindTCP {
		return newStreamServer(t, nil, handle), nil
	}
	cert, pin, _ := selfSigned(t, "dns.test")
	return newStreamServer(t, cert, handle), withPin(pin)
}

// reverser answers queries in groups of n, the last one first.
func reverser(n int) func(*serverConn, *dns.Msg, []byte) {
	return func(sc *serverConn, q *dns.Msg, _ []byte) {
		sc.mu.Lock()
		held, _ := sc.State.([]*dns.Msg)
		held = append(held, q)
		if len(held) < n {
			sc.State = held
			sc.mu.Unlock()
			return
		}
		sc.State = nil
		sc.mu.Unlock()
		for i := len(held) - 1; i >= 0; i-- {
			sc.Reply(aAnswer(held[i]))
		}
	}
}

// TestStreamPipelining sends 256 concurrent queries, all with the same
// client ID, to a server that answers them in groups of 8 in reverse order:
// one connection carries them all, the IDs on the wire are unique among
// those in flight (the server checks), and each answer reaches its query
// with the client's ID.
func TestStreamPipelining(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			srv, mod := server(t, kind, reverser(8))
			u, a := newStream(t, kind, srv.Addr, mod)
			const n = 256
			for i := range n {
				a.send(fmt.Sprintf("q%d.test", i), 0xBEEF, 10*time.Second)
			}
			for _, r := range a.wait(n) {
				checkStreamAnswer(t, r)
			}
			if got := srv.Accepted.Load(); got != 1 {
				t.Errorf("server accepted %d connections, want 1", got)
			}
			if got := u.Dials.Load(); got != 1 {
				t.Errorf("Dials = %d, want 1", got)
			}
			queries, maxOut := srv.Conn(0).Stats()
			t.Logf("%d queries on one connection, at most %d in flight at once", queries, maxOut)
			if queries != n || maxOut > MaxInFlight {
				t.Errorf("server: %d queries, at most %d in flight; want %d and at most %d", queries, maxOut, n, MaxInFlight)
			}
		})
	}
}

// TestStreamInFlightBound sends 300 queries to a server that answers only
// once MaxInFlight are in flight (or it saw all 300): the upstream never
// has more in flight, and the rest wait for slots, on the one connection.
func TestStreamInFlightBound(t *testing.T) {
	const n = 300
	srv := newStreamServer(t, nil, func(sc *serverConn, q *dns.Msg, _ []byte) {
		sc.mu.Lock()
		held, _ := sc.State.([]*dns.Msg)
		held = append(held, q)
		release := len(sc.outstanding) == MaxInFlight || sc.N == n
		sc.State = held
		if release {
			sc.State = nil
		}
		sc.mu.Unlock()
		if release {
			for _, q := range held {
				sc.Reply(aAnswer(q))
			}
		}
	})
	_, a := newStream(t, KindTCP, srv.Addr, nil)
	for i := range n {
		a.send(fmt.Sprintf("q%d.test", i), uint16(i), 10*time.Second)
	}
	for _, r := range a.wait(n) {
		checkStreamAnswer(t, r)
	}
	if got, maxOut := srv.Conn(0).Stats(); got != n || maxOut != MaxInFlight {
		t.Errorf("server: %d queries, at most %d in flight; want %d and %d", got, maxOut, n, MaxInFlight)
	}
	if got := srv.Accepted.Load(); got != 1 {
		t.Errorf("server accepted %d connections, want 1", got)
	}
}

// TestStreamReconnect: a server that closes the connection after every
// third answer; each query is answered, on new connections.
func TestStreamReconnect(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			srv, mod := server(t, kind, func(sc *serverConn, q *dns.Msg, _ []byte) {
				sc.Reply(aAnswer(q))
				if sc.N%3 == 0 {
					sc.Close()
				}
			})
			_, a := newStream(t, kind, srv.Addr, mod)
			for i := range 30 {
				checkStreamAnswer(t, a.one(a.send(fmt.Sprintf("q%d.test", i), uint16(i), 5*time.Second)))
			}
			if got := srv.Accepted.Load(); got < 10 {
				t.Errorf("server accepted %d connections, want at least 10", got)
			}
		})
	}
}

// TestStreamRetry: queries in flight when the connection dies (closed or
// reset by the server) are sent again once on a new connection; if that
// one dies too, they fail with the connection's error.
func TestStreamRetry(t *testing.T) {
	for _, kind := range kinds {
		for _, how := range []string{"close", "reset"} {
			t.Run(kind.String()+" "+how, func(t *testing.T) {
				kill := (*serverConn).Close
				if how == "reset" {
					kill = (*serverConn).Reset
				}
				// The first connection dies once it has 3 queries; later
				// ones answer.
				srv, mod := server(t, kind, func(sc *serverConn, q *dns.Msg, _ []byte) {
					if sc.Index > 0 {
						sc.Reply(aAnswer(q))
					} else if sc.N == 3 {
						kill(sc)
					}
				})
				_, a := newStream(t, kind, srv.Addr, mod)
				for i := range 3 {
					a.send(fmt.Sprintf("q%d.test", i), 7, 5*time.Second)
				}
				for _, r := range a.wait(3) {
					checkStreamAnswer(t, r)
				}
				if got := srv.Accepted.Load(); got != 2 {
					t.Errorf("server accepted %d connections, want 2", got)
				}
			})
			t.Run(kind.String()+" "+how+" twice", func(t *testing.T) {
				srv, mod := server(t, kind, func(sc *serverConn, _ *dns.Msg, _ []byte) {
					if how == "reset" {
						sc.Reset()
					} else {
						sc.Close()
					}
				})
				_, a := newStream(t, kind, srv.Addr, mod)
				r := a.one(a.send("q.test", 7, 5*time.Second))
				var want error = io.ErrUnexpectedEOF
				if how == "reset" {
					want = syscall.ECONNRESET
				}
				if !errors.Is(r.err, want) {
					t.Errorf("got %v, want an error wrapping %v", r.err, want)
				}
				if got := srv.Accepted.Load(); got != 2 {
					t.Errorf("server accepted %d connections, want 2 (one retry)", got)
				}
			})
		}
	}
}

// TestStreamStall: a server that reads queries and never answers. The
// query fails at its deadline with a timeout, the connection is closed as
// stalled, and the next query goes on a new connection.
func TestStreamStall(t *testing.T) {
	srv := newStreamServer(t, nil, func(sc *serverConn, q *dns.Msg, _ []byte) {
		if sc.Index > 0 {
			sc.Reply(aAnswer(q))
		}
	})
	_, a := newStream(t, KindTCP, srv.Addr, nil)
	start := time.Now()
	r := a.one(a.send("stall.test", 1, 300*time.Millisecond))
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Errorf("got %v, want a timeout", r.err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("failed after %v, before the deadline", took)
	}
	srv.Conn(0).waitClosed(t, "the stalled connection to close")
	checkStreamAnswer(t, a.one(a.send("next.test", 2, 5*time.Second)))
	if got := srv.Accepted.Load(); got != 2 {
		t.Errorf("server accepted %d connections, want 2", got)
	}
}

// TestStreamSlowNotStalled: a query times out on a connection that
// answers others meanwhile: the connection stays.
func TestStreamSlowNotStalled(t *testing.T) {
	srv := newStreamServer(t, nil, func(sc *serverConn, q *dns.Msg, _ []byte) {
		if q.Question[0].Name != "slow.test." {
			sc.Reply(aAnswer(q))
		}
	})
	_, a := newStream(t, KindTCP, srv.Addr, nil)
	slow := a.send("slow.test", 1, 300*time.Millisecond)
	fast := a.send("fast.test", 2, 5*time.Second)
	got := a.wait(2)
	checkStreamAnswer(t, got[fast])
	if !errors.Is(got[slow].err, context.DeadlineExceeded) {
		t.Errorf("slow query: got %v, want a timeout", got[slow].err)
	}
	checkStreamAnswer(t, a.one(a.send("again.test", 3, 5*time.Second)))
	if got := srv.Accepted.Load(); got != 1 {
		t.Errorf("server accepted %d connections, want 1", got)
	}
}

// TestStreamCancel: queries in flight and queued (more than MaxInFlight)
// are canceled on a server that holds them: each ends with
// context.Canceled at once, and their slots are free again: new queries
// go on the same connection, and the late answers to the canceled ones
// (same names, old IDs) do not reach them.
func TestStreamCancel(t *testing.T) {
	release := make(chan struct{})
	srv := newStreamServer(t, nil, func(sc *serverConn, q *dns.Msg, _ []byte) {
		if q.Question[0].Name == "held.test." {
			sc.mu.Lock()
			held, _ := sc.State.([]*dns.Msg)
			sc.State = append(held, q)
			sc.mu.Unlock()
			return
		}
		// A new query: first the late answers to the held ones, each
		// with a marker address.
		select {
		case <-release:
		default:
			close(release)
			sc.mu.Lock()
			held, _ := sc.State.([]*dns.Msg)
			sc.mu.Unlock()
			for _, h := range held {
				m := aAnswer(h)
				m.Question[0].Name = q.Question[0].Name // looks like the new query's
				m.Answer[0].Header().Name = q.Question[0].Name
				m.Answer[0].(*dns.A).A = net.IPv4(192, 0, 2, 99)
				sc.Reply(m)
			}
		}
		sc.Reply(aAnswer(q))
	})
	u, a := newStream(t, KindTCP, srv.Addr, nil)
	const n = MaxInFlight + 10
	var qs []*Query
	for range n {
		qs = append(qs, a.send("held.test", 5, 10*time.Second))
	}
	waitFor(t, "the server to hold MaxInFlight queries", func() bool {
		got, _ := srv.Conn(0).Stats()
		return got == MaxInFlight
	})
	// The queued ones first: a slot freed would take one.
	for _, q := range slices.Backward(qs) {
		q.Cancel()
	}
	for _, r := range a.wait(n) {
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("canceled query: got %x %v, want context.Canceled", r.answer, r.err)
		}
	}
	for i := range MaxInFlight {
		a.send(fmt.Sprintf("new%d.test", i), 6, 10*time.Second)
	}
	for _, r := range a.wait(MaxInFlight) {
		m := checkStreamAnswer(t, r)
		if a := m.Answer[0].(*dns.A).A; a.Equal(net.IPv4(192, 0, 2, 99)) {
			t.Errorf("a late answer to a canceled query reached a new one: %v", m)
		}
	}
	if got := srv.Accepted.Load(); got != 1 {
		t.Errorf("server accepted %d connections, want 1", got)
	}
	if got, _ := srv.Conn(0).Stats(); got != 2*MaxInFlight {
		t.Errorf("server read %d queries, want %d (the 10 canceled while queued never sent)", got, 2*MaxInFlight)
	}
	a.noMore()
	_ = u
}

// TestStreamCancelRace cancels queries at random moments while a server
// answers them at random moments; each query ends exactly once (asker
// checks), with its answer or context.Canceled. Run with -race.
func TestStreamCancelRace(t *testing.T) {
	srv := newStreamServer(t, nil, func(sc *serverConn, q *dns.Msg, _ []byte) {
		if q.Id%3 == 0 {
			sc.Reply(aAnswer(q))
			return
		}
		go sc.Reply(aAnswer(q))
	})
	_, a := newStream(t, KindTCP, srv.Addr, nil)
	const n = 2000
	var wg sync.WaitGroup
	for i := range n {
		q := a.send(fmt.Sprintf("q%d.test", i), uint16(i), 10*time.Second)
		if i%2 == 0 {
			wg.Go(q.Cancel)
		}
	}
	canceled := 0
	for _, r := range a.wait(n) {
		if errors.Is(r.err, context.Canceled) {
			canceled++
			continue
		}
		checkStreamAnswer(t, r)
	}
	wg.Wait()
	a.noMore()
	t.Logf("%d of %d queries canceled before their answer", canceled, n)
}

// TestStreamKeepalive: every query carries an empty edns-tcp-keepalive
// option; the server's TIMEOUT shortens the idle timeout (0: close as
// soon as nothing is in flight), and the answers reach the client without
// the keepalive and padding options the server added.
func TestStreamKeepalive(t *testing.T) {
	for _, timeout := range []uint16{0, 3} { // 0, 300 ms
		t.Run(fmt.Sprint(timeout), func(t *testing.T) {
			srv := newStreamServer(t, nil, func(sc *serverConn, q *dns.Msg, _ []byte) {
				o := q.IsEdns0()
				if o == nil || !slices.ContainsFunc(o.Option, func(e dns.EDNS0) bool {
					k, ok := e.(*dns.EDNS0_TCP_KEEPALIVE)
					return ok && k.Length == 0
				}) {
					t.Errorf("query without an empty keepalive option: %v", q)
				}
				m := aAnswer(q)
				m.IsEdns0().Option = []dns.EDNS0{
					&dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6869"},
					// miekg/dns packs a zero Timeout as no TIMEOUT at all.
					&dns.EDNS0_LOCAL{Code: dns.EDNS0TCPKEEPALIVE, Data: []byte{byte(timeout >> 8), byte(timeout)}},
					&dns.EDNS0_PADDING{Padding: make([]byte, 40)},
				}
				sc.Reply(m)
			})
			_, a := newStream(t, KindTCP, srv.Addr, nil)
			start := time.Now()
			m := checkStreamAnswer(t, a.one(a.send("ka.test", 1, 5*time.Second)))
			opts := m.IsEdns0().Option
			if len(opts) != 1 || opts[0].Option() != dns.EDNS0NSID {
				t.Errorf("answer options %v, want the NSID only", opts)
			}
			srv.Conn(0).waitClosed(t, "the upstream to close the connection")
			took := time.Since(start)
			t.Logf("closed after %v", took)
			if timeout > 0 && took < time.Duration(timeout)*100*time.Millisecond {
				t.Errorf("closed after %v, before the server's timeout", took)
			}
			checkStreamAnswer(t, a.one(a.send("again.test", 2, 5*time.Second)))
			if got := srv.Accepted.Load(); got != 2 {
				t.Errorf("server accepted %d connections, want 2", got)
			}
		})
	}
}

// TestStreamIdle: without keepalive from the server, an idle connection
// closes after the idle timeout, and the next query reconnects.
func TestStreamIdle(t *testing.T) {
	srv := newStreamServer(t, nil, streamAnswerA)
	u, a := newStream(t, KindTCP, srv.Addr, nil)
	u.idle = 200 * time.Millisecond
	start := time.Now()
	checkStreamAnswer(t, a.one(a.send("q.test", 1, 5*time.Second)))
	srv.Conn(0).waitClosed(t, "the idle connection to close")
	if took := time.Since(start); took < u.idle {
		t.Errorf("closed after %v, before the idle timeout", took)
	}
	waitFor(t, "the upstream to count the connection closed", func() bool { return u.Conns.Now() == 0 })
	checkStreamAnswer(t, a.one(a.send("q.test", 2, 5*time.Second)))
	if got := srv.Accepted.Load(); got != 2 {
		t.Errorf("server accepted %d connections, want 2", got)
	}
}

// TestStreamPadding: over TLS every query is padded to a multiple of 128
// bytes with the Padding option, an OPT record added if it had none; over
// TCP a query without OPT goes unchanged.
func TestStreamPadding(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			var mu sync.Mutex
			var lens []int
			var hasOPT []bool
			srv, mod := server(t, kind, func(sc *serverConn, q *dns.Msg, raw []byte) {
				mu.Lock()
				lens = append(lens, len(raw))
				hasOPT = append(hasOPT, q.IsEdns0() != nil)
				mu.Unlock()
				sc.Reply(aAnswer(q))
			})
			_, a := newStream(t, kind, srv.Addr, mod)
			for i, withOPT := range []bool{true, false} {
				q := &Query{Msg: streamQuery(t, "a-longer-name-to-pad.test", uint16(i), withOPT), Limit: 1232,
					Deadline: time.Now().Add(5 * time.Second), Identity: a.id, Done: a}
				u := a.u
				u.Exchange(q)
				checkStreamAnswer(t, a.one(q))
			}
			mu.Lock()
			defer mu.Unlock()
			for i, l := range lens {
				if kind == KindTLS && (l%edns.QueryPadBlock != 0 || !hasOPT[i]) {
					t.Errorf("query %d over TLS: %d bytes, OPT %v; want a multiple of %d with OPT", i, l, hasOPT[i], edns.QueryPadBlock)
				}
			}
			if kind == KindTCP && (hasOPT[1] || lens[1] != len(streamQuery(t, "a-longer-name-to-pad.test", 1, false))) {
				t.Errorf("query without OPT over TCP: %d bytes, OPT %v; want it unchanged", lens[1], hasOPT[1])
			}
		})
	}
}

// TestStreamIdentities: each identity gets its own connection, dialed with
// its credentials; once a newer identity is used, the older one's
// connection closes as soon as it is idle, and the newer one's stays.
func TestStreamIdentities(t *testing.T) {
	srv := newStreamServer(t, nil, streamAnswerA)
	d := &testDialer{proxied: true}
	_, a := newStream(t, KindTCP, srv.Addr, func(_ *Spec, o *Options) { o.Dialer = d })
	credA, credB := egress.Credentials{User: "a", Pass: "1"}, egress.Credentials{User: "b", Pass: "2"}
	a.id = NewIdentity(credA, nil, time.Now())
	for i := range 5 {
		checkStreamAnswer(t, a.one(a.send("a.test", uint16(i), 5*time.Second)))
	}
	a.id = NewIdentity(credB, nil, time.Now())
	checkStreamAnswer(t, a.one(a.send("b.test", 9, 5*time.Second)))
	srv.Conn(0).waitClosed(t, "the old identity's connection to close")
	for i := range 5 {
		checkStreamAnswer(t, a.one(a.send("b.test", uint16(i), 5*time.Second)))
	}
	if got := srv.Accepted.Load(); got != 2 {
		t.Errorf("server accepted %d connections, want 2", got)
	}
	select {
	case <-srv.Conn(1).Done:
		t.Errorf("the current identity's connection closed")
	default:
	}
	if got, want := d.Creds(), []egress.Credentials{credA, credB}; !slices.Equal(got, want) {
		t.Errorf("dials with credentials %v, want %v", got, want)
	}
}

// TestStreamTLSVerify: the server is authenticated by a pin (the SHA-256
// of a TBS certificate of its chain, no CA needed), or without pins by the
// roots and the server name.
func TestStreamTLSVerify(t *testing.T) {
	cert, pin, x := selfSigned(t, "dns.test")
	srv := newStreamServer(t, cert, streamAnswerA)
	roots := x509.NewCertPool()
	roots.AddCert(x)
	for _, tc := range []struct {
		name   string
		pins   [][32]byte
		roots  *x509.CertPool
		server string
		ok     bool
	}{
		{"pin", [][32]byte{{1}, pin}, nil, "dns.test", true},
		{"pin, another name", [][32]byte{pin}, nil, "other.test", true},
		{"wrong pin", [][32]byte{{1}}, roots, "dns.test", false},
		{"roots and name", nil, roots, "dns.test", true},
		{"roots, wrong name", nil, roots, "other.test", false},
		{"no roots", nil, nil, "dns.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, a := newStream(t, KindTLS, srv.Addr, func(s *Spec, _ *Options) {
				s.Pins, s.ServerName = tc.pins, tc.server
			})
			if tc.roots != nil {
				u.tls.RootCAs = tc.roots
			}
			r := a.one(a.send("q.test", 1, 5*time.Second))
			if tc.ok {
				checkStreamAnswer(t, r)
				return
			}
			if r.err == nil {
				t.Fatal("answered")
			}
			t.Logf("refused: %v", r.err)
			if tc.pins != nil && !errors.Is(r.err, ErrCertificate) {
				t.Errorf("got %v, want ErrCertificate", r.err)
			}
		})
	}
}

// TestStreamTLSResumption: directly, a new connection resumes the TLS
// session; through a proxy it never does (a ticket would link circuits).
func TestStreamTLSResumption(t *testing.T) {
	for _, proxied := range []bool{false, true} {
		t.Run(fmt.Sprint("proxied=", proxied), func(t *testing.T) {
			cert, pin, _ := selfSigned(t, "dns.test")
			srv := newStreamServer(t, cert, func(sc *serverConn, q *dns.Msg, _ []byte) {
				sc.Reply(aAnswer(q))
				sc.Close()
			})
			_, a := newStream(t, KindTLS, srv.Addr, func(s *Spec, o *Options) {
				s.Pins = [][32]byte{pin}
				o.Dialer = &testDialer{proxied: proxied}
			})
			for i := range 3 {
				checkStreamAnswer(t, a.one(a.send("q.test", uint16(i), 5*time.Second)))
				srv.Conn(i).waitClosed(t, "the connection to close")
			}
			resumed := 0
			for i := range 3 {
				sc := srv.Conn(i)
				sc.mu.Lock()
				if sc.TLS.DidResume {
					resumed++
				}
				sc.mu.Unlock()
			}
			if proxied && resumed != 0 || !proxied && resumed == 0 {
				t.Errorf("%d of 3 connections resumed a session", resumed)
			}
		})
	}
}

// TestStreamGarbage: a frame with an unknown ID is dropped (the query is
// answered later); a frame too short for a DNS header breaks the
// connection (the query is retried on a new one); a whole answer of 13 KB
// comes through.
func TestStreamGarbage(t *testing.T) {
	srv := newStreamServer(t, nil, func(sc *serverConn, q *dns.Msg, _ []byte) {
		switch name := q.Question[0].Name; {
		case name == "stray.test.":
			stray := aAnswer(q)
			stray.Id++
			sc.Reply(stray)
			sc.Reply(aAnswer(q))
		case name == "short.test." && sc.Index == 0:
			sc.Forget(q.Id)
			sc.WriteRaw([]byte{0, 3, 1, 2, 3})
		case name == "big.test.":
			m := aAnswer(q)
			for i := range 50 {
				rr, _ := dns.NewRR(fmt.Sprintf("big.test. 60 IN TXT %q %q", bytes.Repeat([]byte{'a' + byte(i%26)}, 250), "x"))
				m.Answer = append(m.Answer, rr)
			}
			sc.Reply(m)
		default:
			sc.Reply(aAnswer(q))
		}
	})
	_, a := newStream(t, KindTCP, srv.Addr, nil)
	checkStreamAnswer(t, a.one(a.send("stray.test", 1, 5*time.Second)))
	checkStreamAnswer(t, a.one(a.send("short.test", 2, 5*time.Second)))
	if got := srv.Accepted.Load(); got != 2 {
		t.Errorf("server accepted %d connections, want 2", got)
	}
	r := a.one(a.send("big.test", 3, 5*time.Second))
	m := checkStreamAnswer(t, r)
	if len(m.Answer) != 51 || len(r.answer) < 13000 {
		t.Errorf("big answer: %d records, %d bytes", len(m.Answer), len(r.answer))
	}
}

// TestStreamConnectTimeout: while the connection cannot be made, queries
// fail at their deadline with a timeout; a refused connection fails them
// at once.
func TestStreamConnectTimeout(t *testing.T) {
	d := &testDialer{hold: make(chan struct{})}
	_, a := newStream(t, KindTCP, "127.0.0.1:1", func(_ *Spec, o *Options) { o.Dialer = d; o.Timeout = time.Minute })
	r := a.one(a.send("q.test", 1, 200*time.Millisecond))
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Errorf("got %v, want a timeout", r.err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, a = newStream(t, KindTCP, addr, nil)
	r = a.one(a.send("q.test", 1, 5*time.Second))
	if !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Errorf("got %v, want connection refused", r.err)
	}
}

// TestStreamClose: Close fails the queries in flight and waiting with
// ErrClosed, and those sent later.
func TestStreamClose(t *testing.T) {
	srv := newStreamServer(t, nil, func(*serverConn, *dns.Msg, []byte) {})
	u, a := newStream(t, KindTCP, srv.Addr, nil)
	const n = MaxInFlight + 5
	for range n {
		a.send("q.test", 1, 10*time.Second)
	}
	waitFor(t, "the server to read MaxInFlight queries", func() bool {
		got, _ := srv.Conn(0).Stats()
		return got == MaxInFlight
	})
	u.Close()
	for _, r := range a.wait(n) {
		if !errors.Is(r.err, ErrClosed) {
			t.Errorf("got %v, want ErrClosed", r.err)
		}
	}
	if r := a.one(a.send("q.test", 1, 10*time.Second)); !errors.Is(r.err, ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", r.err)
	}
	if got := u.Conns.Now(); got != 0 {
		t.Errorf("%d connections open after Close", got)
	}
}

// TestStreamMaxConns: with one connection allowed, a new identity's
// queries wait until the old identity's idle connection closed.
func TestStreamMaxConns(t *testing.T) {
	srv := newStreamServer(t, nil, streamAnswerA)
	u, a := newStream(t, KindTCP, srv.Addr, func(_ *Spec, o *Options) { o.MaxConns = 1 })
	a.id = NewIdentity(egress.Credentials{User: "a"}, nil, time.Now())
	checkStreamAnswer(t, a.one(a.send("a.test", 1, 5*time.Second)))
	a.id = NewIdentity(egress.Credentials{User: "b"}, nil, time.Now())
	checkStreamAnswer(t, a.one(a.send("b.test", 2, 5*time.Second)))
	if got := u.Conns.Peak(); got != 1 {
		t.Errorf("%d connections open at once, want 1", got)
	}
}

// TestStreamTLSConfig: TLS 1.2 at least, SNI the server name without a
// port.
func TestStreamTLSConfig(t *testing.T) {
	c := tlsConfig(&Spec{ServerName: "dns.example:8853"}, true, time.Now)
	if c.MinVersion != tls.VersionTLS12 || c.ServerName != "dns.example" || !c.SessionTicketsDisabled || c.ClientSessionCache != nil {
		t.Errorf("proxied: MinVersion %x, ServerName %q, tickets disabled %v, cache %v", c.MinVersion, c.ServerName,
			c.SessionTicketsDisabled, c.ClientSessionCache)
	}
	if c := tlsConfig(&Spec{ServerName: "dns.example"}, false, time.Now); c.SessionTicketsDisabled || c.ClientSessionCache == nil {
		t.Errorf("direct: tickets disabled %v, cache %v", c.SessionTicketsDisabled, c.ClientSessionCache)
	}
}

// recordCounter counts the TLS application data records a client sends
// (TLS 1.2, where the handshake's records have other types).
type recordCounter struct {
	net.Conn
	mu      sync.Mutex
	pending []byte // bytes of a record header not parsed yet
	skip    int    // bytes of the current record's body still to come
	records int
}

func (r *recordCounter) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := b[:n]; len(p) > 0; {
		if r.skip > 0 {
			k := min(r.skip, len(p))
			r.skip -= k
			p = p[k:]
			continue
		}
		k := min(5-len(r.pending), len(p))
		r.pending = append(r.pending, p[:k]...)
		p = p[k:]
		if len(r.pending) == 5 {
			if r.pending[0] == 23 { // application_data
				r.records++
			}
			r.skip = int(r.pending[3])<<8 | int(r.pending[4])
			r.pending = r.pending[:0]
		}
	}
	return n, err
}

func (r *recordCounter) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.records
}

// TestStreamTLSRecordPerQuery: over TLS, each query goes in its own TLS
// record (dnsdist 1.7 answers only the first query of a record holding
// several), while many are written at once.
func TestStreamTLSRecordPerQuery(t *testing.T) {
	cert, pin, _ := selfSigned(t, "dns.test")
	var counters []*recordCounter
	var mu sync.Mutex
	srv := newStreamServer(t, cert, reverser(10), func(s *streamServer) {
		s.tls.MaxVersion = tls.VersionTLS12
		s.wrap = func(c net.Conn) net.Conn {
			rc := &recordCounter{Conn: c}
			mu.Lock()
			counters = append(counters, rc)
			mu.Unlock()
			return rc
		}
	})
	_, a := newStream(t, KindTLS, srv.Addr, withPin(pin))
	const n = 100
	for i := range n {
		a.send(fmt.Sprintf("q%d.test", i), 1, 10*time.Second)
	}
	for _, r := range a.wait(n) {
		checkStreamAnswer(t, r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(counters) != 1 || counters[0].count() != n {
		t.Errorf("%d connections, %d application data records; want 1 connection, %d records", len(counters), counters[0].count(), n)
	}
}

// TestStreamKeepaliveZeroDrains: after an answer with a keepalive TIMEOUT
// of 0, the upstream sends no more queries on that connection (they go on
// a new one), and closes it once the queries in flight are answered.
func TestStreamKeepaliveZeroDrains(t *testing.T) {
	srv := newStreamServer(t, nil, func(sc *serverConn, q *dns.Msg, _ []byte) {
		if sc.Index > 0 {
			sc.Reply(aAnswer(q))
			return
		}
		if q.Question[0].Name == "first.test." {
			m := aAnswer(q)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_LOCAL{Code: dns.EDNS0TCPKEEPALIVE, Data: []byte{0, 0}}}
			sc.mu.Lock()
			sc.State = m // answered once the second query came
			sc.mu.Unlock()
			return
		}
		sc.mu.Lock()
		first, _ := sc.State.(*dns.Msg)
		sc.State = q
		sc.mu.Unlock()
		sc.Reply(first)
	})
	_, a := newStream(t, KindTCP, srv.Addr, nil)
	first := a.send("first.test", 1, 5*time.Second)
	second := a.send("second.test", 2, 5*time.Second)
	checkStreamAnswer(t, a.one(first))
	third := a.send("third.test", 3, 5*time.Second)
	checkStreamAnswer(t, a.one(third))
	if got, _ := srv.Conn(0).Stats(); got != 2 {
		t.Errorf("%d queries on the first connection after its TIMEOUT of 0, want 2", got)
	}
	sc := srv.Conn(0)
	sc.mu.Lock()
	held := sc.State.(*dns.Msg)
	sc.mu.Unlock()
	sc.Reply(aAnswer(held))
	checkStreamAnswer(t, a.one(second))
	sc.waitClosed(t, "the drained connection to close")
}

// TestStreamForgetsSessions: with an identity per query (isolation per
// query), each query's connection closes once answered, and the sessions
// are forgotten but the current one.
func TestStreamForgetsSessions(t *testing.T) {
	srv := newStreamServer(t, nil, streamAnswerA)
	u, a := newStream(t, KindTCP, srv.Addr, nil)
	const n = 20
	for i := range n {
		a.id = NewIdentity(egress.Credentials{User: fmt.Sprint(i)}, nil, time.Now())
		checkStreamAnswer(t, a.one(a.send("q.test", uint16(i), 5*time.Second)))
	}
	waitFor(t, "all but the current connection to close", func() bool { return srv.Open.Load() == 1 })
	waitFor(t, "the old sessions to be forgotten", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		return len(u.sessions) == 1
	})
	if got := srv.Accepted.Load(); got != n {
		t.Errorf("server accepted %d connections, want %d", got, n)
	}
}
