package tortest

import (
	"errors"
	"testing"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// StartTB starts a network for a test or benchmark and closes it in
// tb.Cleanup. If tor or another program is missing ([ErrUnavailable]) it
// calls [labtest.Require], which skips the test, or fails it under CI=true;
// any other start failure fails the test. When the test failed, the state
// directory with the tor logs is kept and its path logged.
func StartTB(tb testing.TB, opts Options) *Network {
	tb.Helper()
	n, err := Start(opts)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			labtest.Require(tb, "tor", err)
		}
		tb.Fatalf("starting the private Tor network: %v", err)
	}
	tb.Logf("private Tor network up in %v (client bootstrapped %v after the relays' launch), SOCKS %s, state %s",
		n.StartTime.Round(10e6), n.BootstrapTime.Round(10e6), n.SOCKS, n.Dir)
	tb.Cleanup(func() {
		if tb.Failed() {
			n.Keep()
			tb.Logf("tor network state (torrcs, logs) kept in %s", n.Dir)
		}
		if err := n.Close(); err != nil {
			tb.Errorf("closing the private Tor network: %v", err)
		}
	})
	return n
}
