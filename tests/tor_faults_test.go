package tests

import (
	"strconv"
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
		if err := tor.StopClient(); err != nil {
			t.Fatal(err)
		}
		stopped := true
		defer func() {
			if stopped {
				tor.StartClient(true)
			}
		}()
		p := startProxyBin(t, append(append(labArgs(lab, lab.Go), torArgs(tor)...), "--timeout=3s")...)
		expectServfail(t, p, "SERVFAIL until the resolver's certificate arrives", "Unable to retrieve server certificates")
		time.Sleep(5 * time.Second) // let the certificate backoff grow
		if err := tor.StartClient(true); err != nil {
			t.Fatal(err)
		}
		stopped = false
		back := time.Now()
		waitAnswer(t, p, "www.lab.test")
		if took := time.Since(back); took > 15*time.Second {
			t.Errorf("answers came %v after Tor bootstrapped", took)
		} else {
			t.Logf("answering %v after Tor bootstrapped", took.Round(time.Millisecond))
		}
	})
}
