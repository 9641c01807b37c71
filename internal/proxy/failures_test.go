package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want failureKind
	}{
		{fmt.Errorf("read tcp 127.0.0.1:4242->127.0.0.1:443: %w", os.ErrDeadlineExceeded), failTimeout},
		{context.DeadlineExceeded, failTimeout},
		{upstream.ErrUDPTimeout, failTimeout},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), failRefused},
		{fmt.Errorf("dial: %w", syscall.ENETUNREACH), failUnreachable},
		{fmt.Errorf("%w: CONNECT x:443 refused: connection refused (0x05)", egress.ErrSOCKS), failSOCKS},
		{fmt.Errorf("%w: bad tag", upstream.ErrCorrupt), failCorrupt},
		{errMismatch(edns.ErrMismatch), failMismatch},
		{upstream.ErrNoCert, failNoCert},
		{fmt.Errorf("tls: %w: no certificate of the chain (1) matches a pin", upstream.ErrCertificate), failCertificate},
		{&upstream.HTTPStatusError{Code: 503}, failHTTPStatus},
		{errEvicted, failEvicted},
		{upstream.ErrOverload, failOverload},
		{errors.New("something else"), failOther},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestFailureLogWindow: one line per kind per window, whatever the error
// texts; the failures not logged are counted on the next line, or by
// flush once the window is over; other kinds have windows of their own.
func TestFailureLogWindow(t *testing.T) {
	var buf logtest.Buffer
	f := &failureLog{log: slog.New(slog.NewTextHandler(&buf, nil)), window: 10 * time.Second}
	t0 := time.Unix(1_700_000_000, 0)
	timeout := func(port int) error {
		return fmt.Errorf("read tcp 127.0.0.1:%d->127.0.0.1:443: %w", port, os.ErrDeadlineExceeded)
	}
	lines := func() []string { return strings.Split(strings.TrimSpace(buf.String()), "\n") }

	f.report(t0, failTimeout, timeout(1))
	for i := range 551 {
		f.report(t0.Add(time.Duration(i)*time.Millisecond), failTimeout, timeout(2+i))
	}
	f.report(t0.Add(time.Second), failRefused, syscall.ECONNREFUSED)
	if l := lines(); len(l) != 2 || !strings.Contains(l[0], "kind=timeout") || !strings.Contains(l[1], "kind=refused") {
		t.Fatalf("want one line per kind, got:\n%s", buf.String())
	}
	f.flush(t0.Add(5 * time.Second)) // the window is not over
	if len(lines()) != 2 {
		t.Fatalf("flush inside the window wrote:\n%s", buf.String())
	}
	f.flush(t0.Add(10 * time.Second))
	l := lines()
	if len(l) != 3 || !strings.Contains(l[2], "(and 550 more in the last 10s)") || !strings.Contains(l[2], "127.0.0.1:552->") {
		t.Fatalf("flush after the window: want the last error and 550 more, got:\n%s", buf.String())
	}
	// A new window: the next failure is logged at once, with no count.
	f.report(t0.Add(21*time.Second), failTimeout, timeout(9))
	if l := lines(); len(l) != 4 || strings.Contains(l[3], "more") {
		t.Fatalf("new window:\n%s", buf.String())
	}
	f.report(t0.Add(22*time.Second), failTimeout, timeout(10))
	f.report(t0.Add(32*time.Second), failTimeout, timeout(11))
	if l := lines(); len(l) != 5 || !strings.Contains(l[4], "(and 1 more in the last 10s)") {
		t.Fatalf("next window's line carries the count:\n%s", buf.String())
	}
}

// TestFailureLogOutage: an outage of a resolver that drops every query
// logs a few lines, not one per query, although each error names another
// source port.
func TestFailureLogOutage(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	var buf logtest.Buffer
	rp := startProxy(t, srv, Config{Timeout: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	srv.SetFaults(dnscrypttest.Faults{Silent: true})
	const n = 20
	for range n {
		if r, err := rp.ask(t, "tcp", query("www.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("%v %v", r, err)
		}
	}
	if got := strings.Count(buf.String(), "Unable to get an answer"); got == 0 || got > 3 {
		t.Fatalf("%d failure lines for %d failed queries:\n%s", got, n, buf.String())
	}
}
