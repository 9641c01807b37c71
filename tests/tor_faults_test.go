package tests

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// askTimed asks the proxy over TCP and returns the status and the time it
// took.
func askTimed(t *testing.T, p *proxyProc) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	r := runDig(t, "dig", append(at(t, p.Addr), "+tcp", "+time=15", "www.lab.test", "A")...)
	return r.Status, time.Since(start)
}

// TestTorFaults: whatever goes wrong on the way through Tor, clients get
// SERVFAIL within the deadline (--timeout=3s), the log says why, and the
// proxy recovers by itself.
func TestTorFaults(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	const timeout = 3 * time.Second
	const slack = 2 * time.Second

	expectServfail := func(t *testing.T, p *proxyProc, logged ...string) {
		t.Helper()
		for range 2 {
			status, took := askTimed(t, p)
			if status != "SERVFAIL" || took > timeout+slack {
				t.Fatalf("got %q after %v; want SERVFAIL within %v\n%s", status, took, timeout+slack, p.output())
			}
		}
		for _, want := range logged {
			waitLog(t, p, want, timeout+slack)
		}
	}

	t.Run("SOCKS port refuses", func(t *testing.T) {
		closed := "127.0.0.1:" + strconv.Itoa(freePort(t))
		p := startProxyBin(t, append(labArgs(lab, lab.Go), "--tor", "--proxy=socks5://"+closed, "--timeout=3s")...)
		expectServfail(t, p, "[WARNING]", "connection refused")
	})

	t.Run("the exit cannot reach the resolver", func(t *testing.T) {
		closed := "127.0.0.1:" + strconv.Itoa(freePort(t))
		p := startProxyBin(t, append(append(labArgs(lab, closed), torArgs(tor)...), "--timeout=3s")...)
		expectServfail(t, p, "Unable to retrieve server certificates", "CONNECT "+closed+" refused")
	})

	t.Run("SOCKS accepts but never answers", func(t *testing.T) {
		p := startProxyBin(t, append(append(labArgs(lab, lab.Go), torArgs(tor)...), "--timeout=3s", "--isolation=query")...)
		waitAnswer(t, p, "www.lab.test")
		if err := tor.PauseRelays(); err != nil {
			t.Fatal(err)
		}
		paused := true
		defer func() {
			if paused {
				tor.ResumeRelays()
			}
		}()
		// A new circuit cannot be built: the CONNECT hangs.
		expectServfail(t, p, "context deadline exceeded")
		if err := tor.ResumeRelays(); err != nil {
			t.Fatal(err)
		}
		paused = false
		waitAnswer(t, p, "www.lab.test")
	})

	t.Run("Tor not bootstrapped at start", func(t *testing.T) {
		// A client started while the relays are paused stays at bootstrap
		// 10%: its SOCKS port accepts and answers the handshake, CONNECTs
		// hang.
		if err := tor.StopClient(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := tor.ResumeRelays(); err != nil {
				t.Errorf("resuming the relays: %v", err)
			}
			if _, running := tor.Pids()["client"]; !running {
				if err := tor.StartClient(true); err != nil {
					t.Errorf("restarting the Tor client: %v", err)
				}
			}
		})
		if err := tor.PauseRelays(); err != nil {
			t.Fatal(err)
		}
		if err := tor.StartClient(false); err != nil {
			t.Fatal(err)
		}
		if phase, err := tor.Control("GETINFO status/bootstrap-phase"); err != nil || strings.Contains(phase, "PROGRESS=100") {
			t.Fatalf("the Tor client is bootstrapped, or does not say: %q, %v", phase, err)
		}
		p := startProxyBin(t, append(append(labArgs(lab, lab.Go), torArgs(tor)...), "--timeout=3s")...)
		expectServfail(t, p, "SERVFAIL until the resolver's certificate arrives", "no usable certificate yet")
		// A certificate fetch gives up after 10 s (internal/proxy).
		waitLog(t, p, "Unable to retrieve server certificates", 15*time.Second)
		waitLog(t, p, "context deadline exceeded", time.Second)
		if strings.Contains(p.output(), "connection refused") {
			t.Fatalf("the SOCKS port refused: the client is down, not bootstrapping\n%s", p.output())
		}
		time.Sleep(5 * time.Second) // let the certificate backoff grow
		if err := tor.ResumeRelays(); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		waitAnswer(t, p, "www.lab.test")
		if took := time.Since(back); took > 15*time.Second {
			t.Errorf("answers came %v after the relays resumed", took)
		} else {
			t.Logf("answering %v after the relays resumed (Tor bootstrapping from 10%%)", took.Round(time.Millisecond))
		}
	})
}
