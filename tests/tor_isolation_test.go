package tests

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

// streamLog collects the STREAM events of the Tor client.
type streamLog struct {
	mu     sync.Mutex
	events []tortest.StreamEvent
}

func watchStreams(t *testing.T, tor *tortest.Network) *streamLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := tor.WatchStreams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := &streamLog{}
	go func() {
		for e := range ch {
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
		}
	}()
	return l
}

// all returns the events so far.
func (l *streamLog) all() []tortest.StreamEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// succeeded returns the streams that reached port, in order, skipping the
// first skip of them; certificate fetches (their own "cert-" identity) are
// left out.
func (l *streamLog) succeeded(port string, skip int) []tortest.StreamEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []tortest.StreamEvent
	for _, e := range l.events {
		target, _ := e.SplitExit()
		if _, p, _ := net.SplitHostPort(target); e.Status != "SUCCEEDED" || p != port || strings.Contains(e.SOCKSUser, "cert-") {
			continue
		}
		out = append(out, e)
	}
	if len(out) < skip {
		return nil
	}
	return out[skip:]
}

// TestTorIsolation checks what Tor and the resolver see. Epoch isolation
// (the default with --proxy alone, through Tor's TCP and Unix-domain
// SocksPorts): two queries of one epoch share a SOCKS identity and a
// circuit, the next epoch gets another identity and another circuit, and no
// client key is seen in two epochs. The proxy offers Tor both "no
// authentication" and username/password; every stream carries credentials,
// so Tor picked the latter. Query isolation: every query its own identity,
// circuit and key.
func TestTorIsolation(t *testing.T) {
	tor := sharedTor(t)
	const epoch = 4 * time.Second
	for _, tc := range []struct {
		mode string
		args []string
		// same[i] reports whether query i+1 must share query i's identity.
		same []bool
	}{
		// The default options: only --proxy (and a short epoch).
		{"epoch", []string{"--proxy=socks5://" + tor.SOCKS, "--isolation-epoch=" + epoch.String()}, []bool{true, false, true}},
		{"epoch, Unix socket", []string{"--proxy=socks5://" + torUnixSOCKS, "--isolation-epoch=" + epoch.String()},
			[]bool{true, false, true}},
		{"query", append(torArgs(tor), "--isolation=query"), []bool{false, false, false}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil)
			_, port, _ := net.SplitHostPort(srv.Addr)
			streams := watchStreams(t, tor)
			p := startProxyBin(t, append(slices.Clone(tc.args), resolverArgs(srv)...)...)
			waitAnswer(t, p, "www.example")
			time.Sleep(epoch + 500*time.Millisecond) // a fresh epoch for the queries below
			before := len(streams.succeeded(port, 0))
			firstQuery := len(srv.Queries())
			for i := range 4 {
				if i == 2 && strings.HasPrefix(tc.mode, "epoch") {
					time.Sleep(epoch + 500*time.Millisecond)
				}
				if r := runDig(t, "dig", append(at(t, p.Addr), "+tcp", "www.example", "A")...); r.Status != "NOERROR" {
					t.Fatalf("query %d: %s\n%s", i, r.Status, r.Out)
				}
			}
			var got []tortest.StreamEvent
			for deadline := time.Now().Add(5 * time.Second); ; {
				if got = streams.succeeded(port, before); len(got) >= 4 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(got) != 4 {
				t.Fatalf("%d streams to the resolver for 4 queries", len(got))
			}
			keys := srv.Queries()[firstQuery:]
			if len(keys) != 4 {
				t.Fatalf("the resolver saw %d queries, want 4", len(keys))
			}
			for i, same := range tc.same {
				a, b := got[i], got[i+1]
				if a.SOCKSUser == "" {
					t.Fatalf("stream without SOCKS credentials: %s", a.Raw)
				}
				if (a.SOCKSUser == b.SOCKSUser) != same || (a.CircuitID == b.CircuitID) != same {
					t.Errorf("queries %d and %d: users %q/%q, circuits %s/%s; want shared=%v",
						i, i+1, a.SOCKSUser, b.SOCKSUser, a.CircuitID, b.CircuitID, same)
				}
			}
			// Ephemeral keys are on by default with --tor: every query its
			// own key, so in particular no key crosses an epoch.
			seen := map[[32]byte]bool{}
			for _, q := range keys {
				if seen[q.ClientPK] {
					t.Errorf("client key %x used twice", q.ClientPK[:8])
				}
				seen[q.ClientPK] = true
			}
			t.Logf("users %s %s %s %s on circuits %s %s %s %s", got[0].SOCKSUser, got[1].SOCKSUser,
				got[2].SOCKSUser, got[3].SOCKSUser, got[0].CircuitID, got[1].CircuitID, got[2].CircuitID, got[3].CircuitID)
		})
	}
}

// TestTorIsolationNoEphemeral: with --no-ephemeral-keys the key follows the
// epoch: one key within an epoch, a new one with the next.
func TestTorIsolationNoEphemeral(t *testing.T) {
	tor := sharedTor(t)
	const epoch = 4 * time.Second
	srv := dnscrypttest.NewServer(t, nil)
	p := startProxyBin(t, append(append(torArgs(tor), "--no-ephemeral-keys", "--isolation-epoch="+epoch.String()), resolverArgs(srv)...)...)
	waitAnswer(t, p, "www.example")
	time.Sleep(epoch + 500*time.Millisecond)
	first := len(srv.Queries())
	for i := range 4 {
		if i == 2 {
			time.Sleep(epoch + 500*time.Millisecond)
		}
		if r := runDig(t, "dig", append(at(t, p.Addr), "www.example", "A")...); r.Status != "NOERROR" {
			t.Fatalf("query %d: %s", i, r.Status)
		}
	}
	q := srv.Queries()[first:]
	if len(q) != 4 || q[0].ClientPK != q[1].ClientPK || q[2].ClientPK != q[3].ClientPK || q[1].ClientPK == q[2].ClientPK {
		t.Fatalf("keys across two epochs: %x %x | %x %x", q[0].ClientPK[:4], q[1].ClientPK[:4], q[2].ClientPK[:4], q[3].ClientPK[:4])
	}
}
