package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// logRecorder is a slog.Handler that logs to the test and hands every
// line ("LEVEL message") to a channel.
type logRecorder struct {
	tb    testing.TB
	lines chan string
}

func newLogRecorder(tb testing.TB) *logRecorder {
	return &logRecorder{tb: tb, lines: make(chan string, 10000)}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	var attrs []string
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a.String())
		return true
	})
	h.tb.Logf("%s %s", line, strings.Join(attrs, " "))
	select {
	case h.lines <- line:
	default:
		h.tb.Errorf("log channel full")
	}
	return nil
}

// waitFor consumes log lines until one contains want, and returns the
// lines before it.
func (h *logRecorder) waitFor(tb testing.TB, want string) []string {
	tb.Helper()
	var seen []string
	timeout := time.After(5 * time.Second)
	for {
		select {
		case line := <-h.lines:
			if strings.Contains(line, want) {
				return seen
			}
			seen = append(seen, line)
		case <-timeout:
			tb.Fatalf("no log line %q after %q", want, seen)
		}
	}
}

// fakeResolver is a scripted Fetch.
type fakeResolver struct {
	mu      sync.Mutex
	certs   []*Cert
	err     error
	times   []time.Time
	gate    chan struct{} // if set, each fetch waits for a value (or ctx)
	started chan struct{} // if set, told when a fetch starts
	// The first failFirst fetches fail with errFirst, whatever set says.
	failFirst int
	errFirst  error
}

func (f *fakeResolver) set(err error, cs ...*Cert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certs, f.err = cs, err
}

func (f *fakeResolver) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.times)
}

func (f *fakeResolver) callTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

func (f *fakeResolver) Fetch(ctx context.Context) ([]*Cert, error) {
	f.mu.Lock()
	f.times = append(f.times, time.Now())
	gate, started := f.gate, f.started
	f.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.times) <= f.failFirst {
		return nil, f.errFirst
	}
	return append([]*Cert(nil), f.certs...), f.err
}

// fakeClock is a settable Now.
type fakeClock struct{ unix atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.unix.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time  { return time.Unix(0, c.unix.Load()) }
func (c *fakeClock) Set(t time.Time) { c.unix.Store(t.UnixNano()) }

// runRefresher runs r.Run in a goroutine; the returned stop cancels it and
// checks that it returns context.Canceled promptly.
func runRefresher(tb testing.TB, r *Refresher) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					tb.Errorf("Run returned %v, want context.Canceled", err)
				}
			case <-time.After(2 * time.Second):
				tb.Fatalf("Run did not return after cancel")
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

func TestRefresherInitBackoff(t *testing.T) {
	s1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	errDown := errors.New("resolver down")
	f := &fakeResolver{failFirst: 4, errFirst: errDown} // succeed on the fifth attempt
	f.set(nil, s1)
	logs := newLogRecorder(t)
	var changes []*Cert
	r := &Refresher{
		Fetch:      f.Fetch,
		Now:        func() time.Time { return testNow },
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 80 * time.Millisecond,
		Logger:     slog.New(logs),
		OnChange:   func(c *Cert) { changes = append(changes, c) },
	}
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	times := f.callTimes()
	if len(times) != 5 {
		t.Fatalf("%d fetches, want 5", len(times))
	}
	for i, want := range []time.Duration{20, 40, 80, 80} {
		if gap := times[i+1].Sub(times[i]); gap < want*time.Millisecond {
			t.Errorf("wait %d: %v, want at least %dms", i+1, gap, want)
		}
	}
	if r.Current() != s1 || len(changes) != 1 || changes[0] != s1 {
		t.Errorf("Current %v, OnChange calls %v; want s1 once", r.Current(), changes)
	}
	for range 4 {
		logs.waitFor(t, "ERROR Unable to retrieve server certificates")
	}
	for _, want := range []string{
		"INFO Server certificate with serial #1 received",
		"INFO Chosen certificate #1 is valid from [2023-11-14] to [2023-11-15]",
		"INFO Server key fingerprint is " + Fingerprint(s1.ResolverPK[:]),
	} {
		logs.waitFor(t, want)
	}
}

func TestRefresherInitContext(t *testing.T) {
	errDown := errors.New("resolver down")
	for _, tc := range []struct {
		name string
		set  func(f *fakeResolver)
		want error
	}{
		{"fetch fails", func(f *fakeResolver) { f.set(errDown) }, errDown},
		{"fetch returns nothing", func(f *fakeResolver) { f.set(nil) }, ErrNoValidCert},
		{"fetch returns only expired", func(f *fakeResolver) {
			f.set(nil, mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305)))
		}, ErrNoValidCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeResolver{}
			tc.set(f)
			r := &Refresher{Fetch: f.Fetch, MinBackoff: 10 * time.Millisecond, Now: func() time.Time { return testTill.Add(time.Hour) }}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := r.Init(ctx)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Init returned after %v", d)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, tc.want) {
				t.Errorf("got %v, want DeadlineExceeded and %v", err, tc.want)
			}
			if r.Current() != nil {
				t.Errorf("Current %v, want nil", r.Current())
			}
			if n := f.calls(); n < 2 {
				t.Errorf("%d fetches in 300ms with 10ms backoff", n)
			}
		})
	}
}

func TestRefresherNoFetch(t *testing.T) {
	r := &Refresher{}
	if err := r.Init(context.Background()); err == nil {
		t.Errorf("Init: got nil error")
	}
	if err := r.Run(context.Background()); err == nil {
		t.Errorf("Run: got nil error")
	}
	if r.Current() != nil {
		t.Errorf("Current of the zero Refresher is not nil")
	}
	r.Trigger() // must not block or panic
	r.Trigger()
}

func TestRefresherBackoff(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		min, max time.Duration
		want     []time.Duration // for failures 1, 2, ...
	}{
		{0, 0, []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 64 * s, 128 * s, 256 * s, 300 * s, 300 * s}},
		{10 * time.Millisecond, 35 * time.Millisecond, []time.Duration{10e6, 20e6, 35e6, 35e6}},
		{5 * s, 1 * s, []time.Duration{5 * s, 5 * s}}, // max below min: min wins
		{-1, -1, []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 64 * s, 128 * s, 256 * s, 300 * s}},
	} {
		r := &Refresher{MinBackoff: tc.min, MaxBackoff: tc.max}
		for i, want := range tc.want {
			if got := r.backoff(i + 1); got != want {
				t.Errorf("min %v max %v failure %d: got %v, want %v", tc.min, tc.max, i+1, got, want)
			}
		}
		if got := r.backoff(1000); got != tc.want[len(tc.want)-1] {
			t.Errorf("min %v max %v failure 1000: got %v", tc.min, tc.max, got)
		}
	}
}

func TestRefresherNextRefresh(t *testing.T) {
	clock := newFakeClock(testNow)
	r := &Refresher{Now: clock.Now}
	long := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305)) // valid 23 h more
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := r.nextRefresh(long)
		if d < time.Hour || d >= time.Hour+100*time.Second {
			t.Fatalf("got %v, want in [1h, 1h40s)", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct delays: no jitter?", len(seen))
	}
	for _, tc := range []struct {
		now  time.Time
		want time.Duration
	}{
		{testTill.Add(-10 * time.Second), 11 * time.Second}, // just after expiry, before the interval
		{testTill.Add(-500 * time.Millisecond), 1500 * time.Millisecond},
		{testTill, time.Second},
		{testTill.Add(time.Hour), time.Second}, // already expired: MinBackoff
	} {
		clock.Set(tc.now)
		if got := r.nextRefresh(long); got != tc.want {
			t.Errorf("now %v: got %v, want %v", tc.now, got, tc.want)
		}
	}
	r = &Refresher{Now: clock.Now, Interval: time.Minute, Jitter: time.Nanosecond}
	clock.Set(testNow)
	if got := r.nextRefresh(long); got != time.Minute {
		t.Errorf("Interval 1m, Jitter 1ns: got %v", got)
	}
}

// TestRefresherSwitching walks through the switching rule with Trigger.
func TestRefresherSwitching(t *testing.T) {
	s1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	s1x := mustCert(t, testTemplate(1, dnscrypt.XChaCha20Poly1305))
	s2 := mustCert(t, testTemplate(2, dnscrypt.XSalsa20Poly1305))
	later := testTemplate(3, dnscrypt.XSalsa20Poly1305)
	later.NotBefore, later.NotAfter = testTill, testTill.Add(24*time.Hour)
	s3, err := Verify(mustCreate(t, later), testPK, testTill.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	f := &fakeResolver{}
	f.set(nil, s1)
	clock := newFakeClock(testNow)
	logs := newLogRecorder(t)
	var (
		mu      sync.Mutex
		changes []*Cert
	)
	r := &Refresher{
		Fetch:      f.Fetch,
		Now:        clock.Now,
		MinBackoff: time.Millisecond,
		MaxBackoff: time.Millisecond,
		Logger:     slog.New(logs),
		OnChange: func(c *Cert) {
			mu.Lock()
			changes = append(changes, c)
			mu.Unlock()
		},
	}
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, "Chosen certificate #1")
	stop := runRefresher(t, r)

	steps := []struct {
		name    string
		err     error
		certs   []*Cert
		now     time.Time
		wantLog string
		want    *Cert
	}{
		{"higher serial", nil, []*Cert{s1, s2}, testNow, "INFO Switching from certificate #1 to #2: higher serial", s2},
		{"same set, other order", nil, []*Cert{s2, s1}, testNow, "DEBUG Keeping certificate #2", s2},
		{"lower serial only: no longer advertised", nil, []*Cert{s1}, testNow,
			"INFO Switching from certificate #2 to #1: current certificate no longer advertised", s1},
		{"fetch fails: keep", errors.New("boom"), nil, testNow,
			"WARN Unable to retrieve server certificates; keeping the current one", s1},
		{"same serial, higher es-version", nil, []*Cert{s1, s1x}, testNow,
			"INFO Switching from certificate #1 to #1: higher es-version", s1x},
		{"current expired by our clock", nil, []*Cert{s1x, s3}, testTill.Add(time.Hour),
			"INFO Switching from certificate #1 to #3: current certificate expired", s3},
	}
	wantChanges := []*Cert{s1}
	for _, st := range steps {
		f.set(st.err, st.certs...)
		clock.Set(st.now)
		r.Trigger()
		logs.waitFor(t, st.wantLog)
		if got := r.Current(); got != st.want {
			t.Errorf("%s: Current serial %d es %d, want serial %d es %d", st.name, got.Serial, got.Construction, st.want.Serial, st.want.Construction)
		}
		if wantChanges[len(wantChanges)-1] != st.want {
			wantChanges = append(wantChanges, st.want)
		}
		if st.err != nil {
			// Recover, so the next Trigger is not swallowed by backoff.
			f.set(nil, st.want)
			logs.waitFor(t, "Keeping certificate")
		}
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(changes, wantChanges) {
		t.Errorf("OnChange got %d calls, want %d", len(changes), len(wantChanges))
	}
}

func TestRefresherLogs(t *testing.T) {
	tm := testTemplate(0x30303031, dnscrypt.XChaCha20Poly1305) // serial "0001" in ASCII
	tm.NotAfter = tm.NotBefore.Add(48 * time.Hour)
	c := mustCert(t, tm)
	f := &fakeResolver{}
	f.set(nil, c)
	logs := newLogRecorder(t)
	r := &Refresher{Fetch: f.Fetch, Now: func() time.Time { return testNow }, Logger: slog.New(logs)}
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"INFO Server certificate with serial '0001' received",
		"INFO Chosen certificate '0001' is valid from [2023-11-14] to [2023-11-16]",
		"INFO Using version 2.0 of the DNSCrypt protocol",
		"INFO The key rotation period for this server may exceed the recommended value. This is bad for forward secrecy.",
		"INFO Server key fingerprint is " + Fingerprint(c.ResolverPK[:]),
	} {
		logs.waitFor(t, want)
	}
	for _, tc := range []struct {
		serial uint32
		want   string
	}{{0, "#0"}, {1, "#1"}, {0x30303030, "'0000'"}, {0x39393939, "'9999'"}, {0x3030302f, "#808464431"}, {0xffffffff, "#4294967295"}} {
		if got := (&Cert{Serial: tc.serial}).SerialString(); got != tc.want {
			t.Errorf("SerialString(%#x): got %s, want %s", tc.serial, got, tc.want)
		}
	}
}

func TestRefresherExpiryLoggedOnce(t *testing.T) {
	s1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	f := &fakeResolver{}
	f.set(nil, s1)
	clock := newFakeClock(testNow)
	logs := newLogRecorder(t)
	r := &Refresher{Fetch: f.Fetch, Now: clock.Now, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Logger: slog.New(logs)}
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.set(errors.New("resolver down"))
	clock.Set(testTill.Add(time.Minute))
	stop := runRefresher(t, r)
	r.Trigger()
	var lines []string
	for range 10 {
		lines = append(lines, logs.waitFor(t, "Unable to retrieve server certificates")...)
	}
	stop()
	for len(logs.lines) > 0 {
		lines = append(lines, <-logs.lines)
	}
	n := 0
	for _, l := range lines {
		if strings.Contains(l, "ERROR Certificate #1 has expired") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("expiry logged %d times, want once", n)
	}
	if c := r.Current(); c != nil {
		t.Errorf("Current returned certificate #%d after its expiry, want nil", c.Serial)
	}
}

func TestRefresherRunWithoutInit(t *testing.T) {
	s1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	f := &fakeResolver{}
	f.set(nil, s1)
	changed := make(chan *Cert, 1)
	r := &Refresher{Fetch: f.Fetch, Now: func() time.Time { return testNow }, OnChange: func(c *Cert) { changed <- c }}
	runRefresher(t, r)
	select {
	case c := <-changed:
		if c != s1 || r.Current() != s1 {
			t.Errorf("got %v", c)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not fetch at once")
	}
}

func TestRefresherTriggerCoalesces(t *testing.T) {
	s1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	f := &fakeResolver{}
	f.set(nil, s1)
	r := &Refresher{Fetch: f.Fetch, Now: func() time.Time { return testNow }, MinBackoff: time.Millisecond}
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	gate, started := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.gate, f.started = gate, started
	f.mu.Unlock()
	runRefresher(t, r)
	r.Trigger()
	<-started // fetch 2 runs and blocks
	for range 10 {
		r.Trigger()
	}
	gate <- struct{}{}
	<-started // the triggers during fetch 2 make exactly one more
	gate <- struct{}{}
	select {
	case <-started:
		t.Errorf("a third fetch after coalesced triggers")
		gate <- struct{}{}
	case <-time.After(100 * time.Millisecond):
	}
	if n := f.calls(); n != 3 {
		t.Errorf("%d fetches, want 3 (Init and two)", n)
	}
}

func TestRefresherTriggerSpacing(t *testing.T) {
	s1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	f := &fakeResolver{started: make(chan struct{}, 10)}
	f.set(nil, s1)
	r := &Refresher{Fetch: f.Fetch, Now: func() time.Time { return testNow }, MinBackoff: 100 * time.Millisecond}
	runRefresher(t, r) // fetch 1 at once
	<-f.started
	r.Trigger()
	<-f.started // fetch 2: at least MinBackoff after fetch 1
	r.Trigger()
	<-f.started // fetch 3: the same
	times := f.callTimes()
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 100*time.Millisecond {
			t.Errorf("fetch %d came %v after the previous one, want at least MinBackoff", i+1, gap)
		}
	}
}

// TestRefresherTriggerDuringBackoff: with a certificate in hand, a
// Trigger does not cut the failure backoff short (the current certificate
// still works; no hammering a resolver that is down); without any, it does
// (clients are waiting), though never below MinBackoff.
func TestRefresherTriggerDuringBackoff(t *testing.T) {
	t.Run("with a certificate", func(t *testing.T) {
		s1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
		f := &fakeResolver{started: make(chan struct{}, 10)}
		f.set(nil, s1)
		logs := newLogRecorder(t)
		r := &Refresher{Fetch: f.Fetch, Now: func() time.Time { return testNow },
			MinBackoff: 300 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Logger: slog.New(logs)}
		if err := r.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-f.started
		f.set(errors.New("resolver down"))
		runRefresher(t, r)
		r.Trigger() // an early refresh, which fails
		<-f.started
		logs.waitFor(t, "Unable to retrieve server certificates") // the failure is handled
		r.Trigger()
		r.Trigger()
		<-f.started
		times := f.callTimes()
		if gap := times[2].Sub(times[1]); gap < 300*time.Millisecond {
			t.Errorf("retry after %v: Trigger cut the backoff short", gap)
		}
	})
	t.Run("without a certificate", func(t *testing.T) {
		f := &fakeResolver{started: make(chan struct{}, 10)}
		f.set(errors.New("resolver down"))
		logs := newLogRecorder(t)
		r := &Refresher{Fetch: f.Fetch, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Minute, Logger: slog.New(logs)}
		runRefresher(t, r)
		for range 5 { // backoff grows: 50, 100, 200, 400 ms; then 800 ms
			<-f.started
			logs.waitFor(t, "Unable to retrieve server certificates")
		}
		// Run backs off for 800 ms now; MinBackoff since the last fetch
		// may not have passed yet, which delays the fetch by 50 ms at most.
		start := time.Now()
		r.Trigger()
		<-f.started
		if el := time.Since(start); el > 400*time.Millisecond {
			t.Errorf("Trigger without a certificate: next fetch after %v, want well before the 800 ms backoff", el)
		}
		times := f.callTimes()
		if gap := times[5].Sub(times[4]); gap < 50*time.Millisecond {
			t.Errorf("fetches %v apart, below MinBackoff", gap)
		}
	})
}

// TestRefresherShutdown cancels Run in each of its waits and checks that
// it returns promptly and leaves no goroutine behind.
func TestRefresherShutdown(t *testing.T) {
	s1 := mustCert(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	// Each case sets the fake up, and waits until Run is in the wait.
	for _, tc := range []struct {
		name  string
		setup func(f *fakeResolver, r *Refresher)
		wait  func(t *testing.T, f *fakeResolver, r *Refresher, logs *logRecorder)
	}{
		{"waiting for the interval", func(f *fakeResolver, r *Refresher) { f.set(nil, s1) },
			func(t *testing.T, f *fakeResolver, r *Refresher, logs *logRecorder) {
				logs.waitFor(t, "Server key fingerprint is") // the last line of apply
			}},
		{"backing off", func(f *fakeResolver, r *Refresher) { f.set(errors.New("down")) },
			func(t *testing.T, f *fakeResolver, r *Refresher, logs *logRecorder) {
				logs.waitFor(t, "Unable to retrieve server certificates")
			}},
		{"in a fetch", func(f *fakeResolver, r *Refresher) { f.set(nil, s1); f.gate = make(chan struct{}) },
			func(t *testing.T, f *fakeResolver, r *Refresher, logs *logRecorder) { <-f.started }},
		{"spacing triggers", func(f *fakeResolver, r *Refresher) {
			f.set(nil, s1)
			f.gate = make(chan struct{})
		}, func(t *testing.T, f *fakeResolver, r *Refresher, logs *logRecorder) {
			<-f.started // Run's first fetch; trigger during it
			r.Trigger()
			f.gate <- struct{}{}
			// Run takes the trigger once the fetch is applied, then waits
			// out MinBackoff (an hour).
			logs.waitFor(t, "Server key fingerprint is")
			for deadline := time.Now().Add(5 * time.Second); len(r.triggerC()) > 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("Run did not take the trigger")
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			f := &fakeResolver{started: make(chan struct{}, 10)}
			logs := newLogRecorder(t)
			r := &Refresher{Fetch: f.Fetch, Now: func() time.Time { return testNow }, MinBackoff: time.Hour, Logger: slog.New(logs)}
			tc.setup(f, r)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- r.Run(ctx) }()
			tc.wait(t, f, r, logs)
			cancel()
			start := time.Now()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Run did not return")
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("Run took %v to return", d)
			}
			for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > base && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > base {
				t.Errorf("%d goroutines, %d before", n, base)
			}
		})
	}
}

// TestRefresherConcurrent reads Current from many goroutines while Run
// switches certificates; run with -race.
func TestRefresherConcurrent(t *testing.T) {
	var cs []*Cert
	for i := range 20 {
		cs = append(cs, mustCert(t, testTemplate(uint32(i+1), dnscrypt.XSalsa20Poly1305)))
	}
	f := &fakeResolver{}
	f.set(nil, cs[0])
	r := &Refresher{Fetch: f.Fetch, Now: func() time.Time { return testNow }, MinBackoff: time.Microsecond}
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := runRefresher(t, r)
	var wg sync.WaitGroup
	var bad atomic.Int32
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			var last uint32
			for {
				select {
				case <-done:
					return
				default:
				}
				c := r.Current()
				if c == nil || c.Serial < last {
					bad.Add(1)
					continue
				}
				last = c.Serial
				r.Trigger()
				runtime.Gosched()
			}
		})
	}
	for _, c := range cs[1:] {
		f.set(nil, c)
		for deadline := time.Now().Add(2 * time.Second); r.Current() != c && time.Now().Before(deadline); {
			r.Trigger()
			time.Sleep(100 * time.Microsecond)
		}
	}
	close(done)
	wg.Wait()
	stop()
	if r.Current() != cs[len(cs)-1] {
		t.Errorf("ended with serial %d", r.Current().Serial)
	}
	if n := bad.Load(); n != 0 {
		t.Errorf("%d reads saw nil or a serial going backwards", n)
	}
}

func ExampleRefresher() {
	// A stand-in for certs.Fetch against a real resolver.
	c := exampleCert()
	r := &Refresher{
		Fetch:    func(context.Context) ([]*Cert, error) { return []*Cert{c}, nil },
		Now:      func() time.Time { return time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC) },
		OnChange: func(c *Cert) { fmt.Println("now using serial", c.Serial) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Init(ctx); err != nil {
		fmt.Println(err)
		return
	}
	go r.Run(ctx) // refreshes hourly until ctx ends
	fmt.Println(r.Current().Construction)
	// Output:
	// now using serial 7
	// X25519-XChaCha20Poly1305
}
