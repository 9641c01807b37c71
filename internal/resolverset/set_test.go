package resolverset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// fakeUp is an upstream whose behaviour the test sets: how long it takes,
// with which rcode or error it answers.
type fakeUp struct {
	name   string
	ready  chan struct{}
	mu     sync.Mutex
	behave func(q *upstream.Query) (time.Duration, int, error)
	seen   []egress.Credentials
	n      atomic.Int64
}

func newFake(name string, behave func(*upstream.Query) (time.Duration, int, error)) *fakeUp {
	f := &fakeUp{name: name, ready: make(chan struct{}), behave: behave}
	close(f.ready)
	return f
}

func answerOK(*upstream.Query) (time.Duration, int, error) { return 0, dns.RcodeSuccess, nil }

func (f *fakeUp) set(b func(*upstream.Query) (time.Duration, int, error)) {
	f.mu.Lock()
	f.behave = b
	f.mu.Unlock()
}

func (f *fakeUp) Exchange(q *upstream.Query) {
	f.n.Add(1)
	f.mu.Lock()
	f.seen = append(f.seen, q.Identity.Credentials)
	b := f.behave
	f.mu.Unlock()
	delay, rcode, err := b(q)
	if delay < 0 { // behave finishes q itself
		return
	}
	finish := func() {
		if err != nil {
			q.Finish(nil, err)
			return
		}
		m := new(dns.Msg)
		if uerr := m.Unpack(q.Msg); uerr != nil {
			q.Finish(nil, uerr)
			return
		}
		r := new(dns.Msg)
		r.SetRcode(m, rcode)
		b, _ := r.Pack()
		q.Finish(b, nil)
	}
	if delay == 0 {
		finish()
		return
	}
	go func() {
		ctx := q.Context()
		select {
		case <-time.After(delay):
			finish()
		case <-ctx.Done():
			q.Finish(nil, ctx.Err())
		}
	}()
}

func (f *fakeUp) Run(ctx context.Context) { <-ctx.Done() }
func (f *fakeUp) Ready() <-chan struct{}  { return f.ready }
func (f *fakeUp) Stream() bool            { return true }
func (f *fakeUp) Refresh()                {}
func (f *fakeUp) String() string          { return f.name }
func (f *fakeUp) Close() error            { return nil }
func (f *fakeUp) credentials() []egress.Credentials {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]egress.Credentials(nil), f.seen...)
}

// result is what the outer query got.
type result struct {
	rcode int
	err   error
}

type receiver chan result

func (r receiver) Receive(q *upstream.Query, answer []byte, err error) {
	if err != nil {
		r <- result{-1, err}
		return
	}
	r <- result{int(answer[3] & 0x0F), nil}
}

var credSeq atomic.Int64

func fresh() *upstream.Identity {
	return upstream.NewIdentity(egress.Credentials{User: fmt.Sprint("c", credSeq.Add(1))}, nil, time.Now())
}

// ask sends one query through s with identity id and waits for its
// outcome.
func ask(t *testing.T, s *Set, id *upstream.Identity, timeout time.Duration) result {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("www.example.", dns.TypeA)
	b, _ := m.Pack()
	done := make(receiver, 1)
	s.Exchange(&upstream.Query{Msg: b, Limit: 512, Deadline: time.Now().Add(timeout), Identity: id, Done: done})
	select {
	case r := <-done:
		return r
	case <-time.After(timeout + 5*time.Second):
		t.Fatal("no outcome")
		return result{}
	}
}

func members(fs ...*fakeUp) []Member {
	ms := make([]Member, len(fs))
	for i, f := range fs {
		ms[i] = Member{Upstream: f, Name: f.name, Operator: f.name}
	}
	return ms
}

// TestRotateShares: with rotation, each identity (epoch) gets one
// resolver, never the previous epoch's, and over many epochs each resolver
// gets its share; an operator running two resolvers is not picked twice
// in a row while another operator is healthy.
func TestRotateShares(t *testing.T) {
	a, b, c := newFake("a", answerOK), newFake("b", answerOK), newFake("c", answerOK)
	ms := members(a, b, c)
	s, err := New(ms, Options{Selection: Rotate, Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	const epochs = 3000
	var prev *member
	count := map[string]int{}
	for range epochs {
		id := fresh()
		m := s.pick(id)
		if m == prev {
			t.Fatalf("epoch after epoch on %s", m.Name)
		}
		for range 3 { // the same epoch keeps its resolver
			if again := s.pick(id); again != m {
				t.Fatalf("one epoch on %s then %s", m.Name, again.Name)
			}
		}
		count[m.Name]++
		prev = m
	}
	for name, n := range count {
		if n < epochs/3-epochs/20 || n > epochs/3+epochs/20 {
			t.Errorf("%s: %d of %d epochs, want about a third", name, n, epochs)
		}
	}

	// Two resolvers of one operator, one of another: the operator
	// alternates.
	ms[1].Operator = "a"
	s, _ = New(ms, Options{Selection: Rotate, Rand: rand.New(rand.NewPCG(3, 4))})
	prevOp := ""
	for range 200 {
		m := s.pick(fresh())
		if m.Operator == prevOp {
			t.Fatalf("operator %s twice in a row", m.Operator)
		}
		prevOp = m.Operator
	}
}

// TestFastest: the two fastest healthy resolvers take the queries, but for
// one in twenty that explores the others.
func TestFastest(t *testing.T) {
	fs := []*fakeUp{newFake("slow", answerOK), newFake("fast1", answerOK), newFake("fast2", answerOK), newFake("mid", answerOK)}
	s, _ := New(members(fs...), Options{Selection: Fastest, Rand: rand.New(rand.NewPCG(5, 6))})
	for i, d := range []time.Duration{900, 10, 12, 300} {
		for range 20 {
			s.members[i].recordSuccess(d*time.Millisecond, nil)
		}
	}
	count := map[string]int{}
	const n = 2000
	for range n {
		count[s.pick(nil).Name]++
	}
	if fast := count["fast1"] + count["fast2"]; fast < n*9/10 || count["fast1"] < n*4/10 || count["fast2"] < n*4/10 {
		t.Errorf("picks %v: want the two fastest to share about 95%%", count)
	}
	if count["slow"] == 0 || count["mid"] == 0 {
		t.Errorf("picks %v: no exploration", count)
	}
}

// TestFailover: a failing resolver's queries are answered by another, on a
// fresh circuit; after three failures in a row it is benched and left
// alone, probed, and back in the selection once it answers.
func TestFailover(t *testing.T) {
	bad := newFake("bad", func(*upstream.Query) (time.Duration, int, error) {
		return 0, 0, fmt.Errorf("dial: %w", errors.New("connection refused"))
	})
	good := newFake("good", answerOK)
	var logs logtest.Buffer
	s, _ := New(members(bad, good), Options{Selection: Rotate, FreshIdentity: fresh, BenchMin: 50 * time.Millisecond,
		ProbeInterval: 10 * time.Millisecond, Logger: logs.Logger()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, func() bool { st := s.Status(); return st[0].State != stateStarting && st[1].State != stateStarting })
	for range 20 {
		if r := ask(t, s, fresh(), time.Second); r.err != nil || r.rcode != dns.RcodeSuccess {
			t.Fatalf("got %+v, want an answer from the good resolver", r)
		}
	}
	if n := bad.n.Load(); n < 3 || n > 6 {
		t.Errorf("the bad resolver got %d queries: not benched after 3 failures (probes aside)", n)
	}
	st := s.Status()
	if st[0].State != stateBenched || st[1].State != stateUp || st[0].Failures < 3 {
		t.Fatalf("status %+v", st)
	}
	// Failover went over fresh circuits: the good resolver saw credentials
	// the first attempts did not use.
	if len(good.credentials()) < 20 {
		t.Fatalf("good resolver saw %d queries", len(good.credentials()))
	}
	// It comes back.
	bad.set(answerOK)
	waitFor(t, func() bool { return s.Status()[0].State == stateUp })
	if !logs.Contains("Resolver bad benched") || !logs.Contains("Resolver bad answers again") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// TestProbeRefusedComesBack: a benched resolver that answers again comes
// back even if it refuses the probe's question (". NS"): a resolver that
// serves only some names, by policy, as the test lab's do, answers the
// probe REFUSED. One that answers the probe SERVFAIL stays benched.
func TestProbeRefusedComesBack(t *testing.T) {
	down := func(*upstream.Query) (time.Duration, int, error) { return 0, 0, errors.New("connection refused") }
	for _, tc := range []struct {
		name      string
		rootRcode int
		back      bool
	}{
		{"refused", dns.RcodeRefused, true},
		{"servfail", dns.RcodeServerFailure, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flaky := newFake("flaky", down)
			good := newFake("good", answerOK)
			var logs logtest.Buffer
			s, _ := New(members(flaky, good), Options{Selection: Rotate, FreshIdentity: fresh, BenchMin: 20 * time.Millisecond,
				BenchMax: 40 * time.Millisecond, ProbeInterval: 5 * time.Millisecond, Logger: logs.Logger()})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go s.Run(ctx)
			waitFor(t, func() bool {
				ask(t, s, fresh(), time.Second)
				return s.Status()[0].State == stateBenched
			})
			// It answers again: the names it serves, and the probe's
			// question with rootRcode.
			var probes atomic.Int64
			flaky.set(func(q *upstream.Query) (time.Duration, int, error) {
				m := new(dns.Msg)
				if err := m.Unpack(q.Msg); err == nil && len(m.Question) == 1 && m.Question[0].Name == "." {
					probes.Add(1)
					return 0, tc.rootRcode, nil
				}
				return 0, dns.RcodeSuccess, nil
			})
			if tc.back {
				waitFor(t, func() bool { return s.Status()[0].State == stateUp })
				if !logs.Contains("Resolver flaky answers again") {
					t.Fatalf("log:\n%s", logs.String())
				}
				return
			}
			waitFor(t, func() bool { return probes.Load() >= 3 })
			if st := s.Status()[0]; st.State != stateBenched {
				t.Fatalf("after %d probes answered SERVFAIL: %+v, want benched", probes.Load(), st)
			}
		})
	}
}

// TestServfailFailsOver: SERVFAIL and REFUSED answers fail over; when every
// resolver fails, the outer query gets the error.
func TestServfailFailsOver(t *testing.T) {
	servfail := newFake("sf", func(*upstream.Query) (time.Duration, int, error) { return 0, dns.RcodeServerFailure, nil })
	refused := newFake("ref", func(*upstream.Query) (time.Duration, int, error) { return 0, dns.RcodeRefused, nil })
	good := newFake("good", answerOK)
	s, _ := New(members(servfail, refused, good), Options{Selection: Rotate})
	for range 10 {
		if r := ask(t, s, fresh(), time.Second); r.rcode != dns.RcodeSuccess {
			t.Fatalf("got %+v", r)
		}
	}
	s, _ = New(members(servfail, refused), Options{Selection: Rotate})
	if r := ask(t, s, fresh(), time.Second); r.err == nil {
		t.Fatalf("every resolver failed: got %+v, want an error", r)
	}
}

// TestHedge: an answer later than the hedge delay is asked again over
// another circuit (here, of the same resolver); the first answer wins and
// the other attempt is canceled.
func TestHedge(t *testing.T) {
	var slowCred atomic.Value
	up := newFake("r", nil)
	up.set(func(q *upstream.Query) (time.Duration, int, error) {
		if slowCred.CompareAndSwap(nil, q.Identity.Credentials) {
			return time.Hour, 0, nil // the first circuit is stuck
		}
		return 0, dns.RcodeSuccess, nil
	})
	other := newFake("other", answerOK)
	s, _ := New(members(up, other), Options{Selection: Rotate, Hedge: true, FreshIdentity: fresh,
		HedgeMin: 10 * time.Millisecond, HedgeMax: 30 * time.Millisecond, Timeout: 30 * time.Second,
		Rand: rand.New(rand.NewPCG(0, 0))})
	// Make the stuck resolver the rotation's pick.
	id := fresh()
	for s.pick(id) != s.members[0] {
		id = fresh()
	}
	start := time.Now()
	if r := ask(t, s, id, 30*time.Second); r.err != nil || r.rcode != dns.RcodeSuccess {
		t.Fatalf("got %+v", r)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("answered after %v: not hedged", took)
	}
	if other.n.Load() != 0 {
		t.Fatal("hedged to another resolver, want the same one over another circuit")
	}
	if creds := up.credentials(); len(creds) != 2 || creds[0] == creds[1] {
		t.Fatalf("credentials %v: want two circuits", creds)
	}
}

// TestCancelOuter: canceling the client's query cancels its attempts and
// finishes it.
func TestCancelOuter(t *testing.T) {
	stuck := newFake("stuck", func(*upstream.Query) (time.Duration, int, error) { return time.Hour, 0, nil })
	s, _ := New(members(stuck, newFake("x", answerOK)), Options{Selection: Rotate, Rand: rand.New(rand.NewPCG(0, 0))})
	id := fresh()
	for s.pick(id) != s.members[0] {
		id = fresh()
	}
	m := new(dns.Msg)
	m.SetQuestion("www.example.", dns.TypeA)
	b, _ := m.Pack()
	done := make(receiver, 1)
	q := &upstream.Query{Msg: b, Limit: 512, Deadline: time.Now().Add(time.Minute), Identity: id, Done: done}
	s.Exchange(q)
	q.Cancel()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("got %+v, want context.Canceled", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a canceled query was not finished")
	}
}

func TestHedgeBudget(t *testing.T) {
	var b hedgeBudget
	t0 := time.Unix(1000, 0)
	b.roll(t0)
	granted := 0
	for i := range 100 {
		b.query(t0.Add(time.Duration(i) * time.Millisecond))
		if b.take(t0.Add(time.Duration(i) * time.Millisecond)) {
			granted++
		}
	}
	if granted != hedgeBurst+int(hedgeShare*100) {
		t.Fatalf("%d hedges for 100 queries, want burst %d plus %v of them", granted, hedgeBurst, hedgeShare)
	}
	// Two seconds later the window is empty again.
	if !b.take(t0.Add(3 * time.Second)) {
		t.Fatal("no hedge after the window")
	}
}

func TestBenchBackoff(t *testing.T) {
	m := &member{}
	t0 := time.Unix(1000, 0)
	for i := range 2 {
		if m.recordFailure(t0, errors.New("x"), 3, time.Second, 8*time.Second) {
			t.Fatalf("benched after %d failures", i+1)
		}
	}
	if !m.recordFailure(t0, errors.New("x"), 3, time.Second, 8*time.Second) || m.up() {
		t.Fatal("not benched after 3 failures")
	}
	if m.dueProbe(t0.Add(999 * time.Millisecond)) {
		t.Fatal("probed before the backoff")
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	now := t0
	for i, w := range want {
		if m.backoff != w {
			t.Fatalf("backoff %d: %v, want %v", i, m.backoff, w)
		}
		now = now.Add(w)
		if !m.dueProbe(now) || m.dueProbe(now) {
			t.Fatalf("probe %d: due once at %v", i, now)
		}
		m.recordFailure(now, errors.New("x"), 3, time.Second, 8*time.Second)
	}
	if !m.recordSuccess(time.Millisecond, nil) || !m.up() || m.backoff != 0 {
		t.Fatal("a success does not bring it back")
	}
}

func TestHedgeAndAttemptDelays(t *testing.T) {
	m := &member{}
	if d := m.hedgeDelay(nil, 20*time.Millisecond, time.Second); d != time.Second {
		t.Fatalf("no samples: hedge after %v, want the maximum", d)
	}
	for i := range 64 {
		m.recordSuccess(time.Duration(i+1)*time.Millisecond, nil) // 1..64 ms
	}
	// The percentiles are recomputed every 8 samples: after 64, p90 is
	// 58 ms.
	if d := m.hedgeDelay(nil, 20*time.Millisecond, time.Second); d != 58*time.Millisecond {
		t.Fatalf("hedge after %v, want the 90th percentile 58ms", d)
	}
	if d := m.hedgeDelay(nil, 200*time.Millisecond, time.Second); d != 200*time.Millisecond {
		t.Fatalf("hedge after %v, want the minimum", d)
	}
	if d := m.attemptTimeout(2*time.Second, 7*time.Second); d != 2*time.Second {
		t.Fatalf("attempt timeout %v, want 8 x 58ms raised to the minimum 2s", d)
	}
	if d := m.attemptTimeout(100*time.Millisecond, 7*time.Second); d != 464*time.Millisecond {
		t.Fatalf("attempt timeout %v, want 8 x 58ms", d)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}

func TestOperator(t *testing.T) {
	for _, tc := range []struct{ url, name, addr, want string }{
		{"https://www.scaleway.com/", "2.dnscrypt-cert.fr.dnscrypt.org", "212.47.228.136:443", "scaleway.com"},
		{"", "2.dnscrypt-cert.fr.dnscrypt.org", "212.47.228.136:443", "dnscrypt.org"},
		{"", "dns.example.co.uk", "", "example.co.uk"},
		{"", "tor.cloudflare-dns.com", "dns4torpnlfs2ifuz2s2yf3fc7rdmsbhm6rw75euj35pac6ap25zgqad.onion:443", "cloudflare-dns.com"},
		{"", "", "192.0.2.77:853", "192.0.2.0/24"},
		{"", "", "[2001:db8:1:2::1]:853", "2001:db8:1::/48"},
		{"", "", "resolver.onion:853", "resolver.onion"},
		{"not a url", "", "x.example:53", "x.example"},
	} {
		if got := Operator(tc.url, tc.name, tc.addr); got != tc.want {
			t.Errorf("Operator(%q, %q, %q) = %q, want %q", tc.url, tc.name, tc.addr, got, tc.want)
		}
	}
}

// TestReadyAtFirstMember: the set is ready as soon as one member is, while
// another never gets ready (a dead resolver); queries go to the ready one
// only, and the status says the other is still starting.
func TestReadyAtFirstMember(t *testing.T) {
	dead := &fakeUp{name: "dead", ready: make(chan struct{}), behave: answerOK}
	live := newFake("live", answerOK)
	s, _ := New(members(dead, live), Options{Selection: Rotate})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("not ready with one member ready")
	}
	for range 20 {
		if r := ask(t, s, fresh(), time.Second); r.err != nil || r.rcode != dns.RcodeSuccess {
			t.Fatalf("got %+v", r)
		}
	}
	if n := dead.n.Load(); n != 0 {
		t.Errorf("the member that is not ready got %d queries", n)
	}
	if st := s.Status(); st[0].State != stateStarting || st[1].State != stateUp {
		t.Errorf("status %+v, want starting and up", st)
	}
}

// TestRotateEvery: with the same credentials all along (directly, or one
// circuit for the run), rotation still moves to another resolver once
// RotateEvery has passed, and not before.
func TestRotateEvery(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s, _ := New(members(newFake("a", answerOK), newFake("b", answerOK), newFake("c", answerOK)),
		Options{Selection: Rotate, RotateEvery: time.Minute, Now: clock, Rand: rand.New(rand.NewPCG(7, 8))})
	id := upstream.NewIdentity(egress.Credentials{}, nil, time.Now())
	first := s.pick(id)
	for range 10 {
		advance(5 * time.Second)
		if m := s.pick(id); m != first {
			t.Fatalf("moved from %s to %s within RotateEvery", first.Name, m.Name)
		}
	}
	advance(15 * time.Second)
	if m := s.pick(id); m == first {
		t.Fatalf("still on %s after RotateEvery", m.Name)
	}
}

// TestBenchedBeforeReady: before Run has seen any member ready (the proxy
// does not wait for it), a benched member stays out of the selection while
// another is not benched: a resolver that refuses at once takes its three
// failures, not every query's first attempt.
func TestBenchedBeforeReady(t *testing.T) {
	bad := newFake("bad", func(*upstream.Query) (time.Duration, int, error) {
		return 0, 0, fmt.Errorf("dial: %w", errors.New("connection refused"))
	})
	good := newFake("good", answerOK)
	s, _ := New(members(bad, good), Options{Selection: Rotate, FreshIdentity: fresh, BenchMin: time.Minute})
	for range 20 {
		if r := ask(t, s, fresh(), time.Second); r.err != nil || r.rcode != dns.RcodeSuccess {
			t.Fatalf("got %+v, want an answer from the good resolver", r)
		}
	}
	if n := bad.n.Load(); n > 3 {
		t.Errorf("the bad resolver got %d queries before any member was seen ready, want at most 3", n)
	}
	if st := s.Status(); st[0].State != stateBenched || st[1].State != stateStarting {
		t.Errorf("status %+v, want bad benched and good starting (Run not running)", st)
	}
}

// TestLoserKeepsItsQuery: once the winner's answer has finished the
// client's query, the proxy recycles that query's buffer; an attempt
// still in flight (the loser of a hedge, canceled but not yet done) must
// keep reading the query it was given, not the next client's. The loser
// here reads its message after the outer query finished and the test
// overwrote the outer buffer.
func TestLoserKeepsItsQuery(t *testing.T) {
	release := make(chan struct{})
	read := make(chan []byte, 1)
	slow := newFake("slow", func(q *upstream.Query) (time.Duration, int, error) {
		go func() {
			<-release
			read <- bytes.Clone(q.Msg) // as an upstream reads the query's ID late
			q.Finish(nil, context.Canceled)
		}()
		return -1, 0, nil
	})
	fast := newFake("fast", answerOK)
	s, _ := New(members(slow, fast), Options{Selection: Rotate, Hedge: true, HedgeOther: true,
		HedgeMin: time.Millisecond, HedgeMax: time.Millisecond, Rand: rand.New(rand.NewPCG(1, 2))})
	for i := range 2 {
		s.members[i].ready.Store(true)
	}
	// Rotation picks slow first for this identity: make sure of it.
	s.rotPick, s.rotKey, s.rotAt = s.members[0], egress.Credentials{User: "k"}, time.Now()
	m := new(dns.Msg)
	m.SetQuestion("www.example.", dns.TypeA)
	msg, _ := m.Pack()
	want := bytes.Clone(msg)
	done := make(chan struct{})
	s.Exchange(&upstream.Query{Msg: msg, Limit: 512, Deadline: time.Now().Add(5 * time.Second),
		Identity: &upstream.Identity{Credentials: egress.Credentials{User: "k"}},
		Done: receiverFunc(func(*upstream.Query, []byte, error) {
			for i := range msg {
				msg[i] = 0xEE // the proxy reuses the buffer for another client
			}
			close(done)
		})})
	<-done
	close(release)
	if got := <-read; !bytes.Equal(got, want) {
		t.Errorf("the losing attempt read % x after the query finished, want % x", got, want)
	}
}

// receiverFunc is a function as an upstream.Receiver.
type receiverFunc func(*upstream.Query, []byte, error)

func (f receiverFunc) Receive(q *upstream.Query, answer []byte, err error) { f(q, answer, err) }

// TestHedgeColdIdentity: the first queries of an identity that has had no
// answer yet (a new epoch's circuit, and for TCP, DoT and DoH a new
// connection) are hedged only after HedgeMax, not after the warm answer
// times; once the identity has an answer, a late one is hedged as usual.
func TestHedgeColdIdentity(t *testing.T) {
	var slow atomic.Bool
	r := newFake("r", func(*upstream.Query) (time.Duration, int, error) {
		if slow.Load() {
			return 150 * time.Millisecond, dns.RcodeSuccess, nil
		}
		return 0, dns.RcodeSuccess, nil
	})
	s, _ := New(members(r), Options{Selection: Rotate, Hedge: true, FreshIdentity: fresh,
		HedgeMin: 10 * time.Millisecond, HedgeMax: 10 * time.Second, Timeout: 30 * time.Second})
	warm := fresh()
	for range 16 {
		ask(t, s, warm, 5*time.Second)
	}
	slow.Store(true)
	cold := fresh()
	before := r.n.Load()
	if res := ask(t, s, cold, 5*time.Second); res.err != nil {
		t.Fatal(res.err)
	}
	if n := r.n.Load() - before; n != 1 {
		t.Errorf("a new identity's first query: %d attempts, want 1 (no hedge before HedgeMax)", n)
	}
	before = r.n.Load()
	if res := ask(t, s, cold, 5*time.Second); res.err != nil {
		t.Fatal(res.err)
	}
	if n := r.n.Load() - before; n != 2 {
		t.Errorf("the same identity once answered: %d attempts, want 2 (hedged after the warm answer times)", n)
	}
}

// TestRetryOnAnotherCircuit: through a proxy, once every resolver has
// failed a query, it is asked once more over another circuit while time
// and attempts are left (here each resolver fails its first attempt, as a
// bad circuit would), instead of failing with time left.
func TestRetryOnAnotherCircuit(t *testing.T) {
	failFirst := func() func(*upstream.Query) (time.Duration, int, error) {
		var n atomic.Int64
		return func(*upstream.Query) (time.Duration, int, error) {
			if n.Add(1) == 1 {
				return 0, 0, errors.New("socks5: general failure")
			}
			return 0, dns.RcodeSuccess, nil
		}
	}
	a, b := newFake("a", failFirst()), newFake("b", failFirst())
	s, _ := New(members(a, b), Options{Selection: Rotate, FreshIdentity: fresh, Timeout: 30 * time.Second})
	for i := range 2 {
		s.members[i].ready.Store(true)
	}
	if r := ask(t, s, fresh(), 10*time.Second); r.err != nil || r.rcode != dns.RcodeSuccess {
		t.Fatalf("got %+v, want an answer on the third attempt", r)
	}
	if n := a.n.Load() + b.n.Load(); n != 3 {
		t.Errorf("%d attempts, want 3 (each resolver once, then one again over another circuit)", n)
	}
	if creds := append(a.credentials(), b.credentials()...); len(creds) != 3 || creds[0] == creds[1] || creds[1] == creds[2] || creds[0] == creds[2] {
		t.Errorf("credentials %v: want a circuit per attempt", creds)
	}
}
