package tortest_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

// TestUsage runs what the package documentation shows, on one network: a
// test sends TCP through Tor to a service on 127.0.0.1 and checks which
// circuit carried it; then it stops the Tor client, checks that the SOCKS
// port refuses connections, and brings the client back. Without tor it is
// skipped (and fails under CI=true).
func TestUsage(t *testing.T) {
	n := tortest.StartTB(t, tortest.Options{})

	ln, err := net.Listen("tcp4", "127.0.0.1:0") // the service
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events, err := n.WatchStreams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := proxy.SOCKS5("tcp", n.SOCKS, &proxy.Auth{User: "case-1", Password: "x"}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for e := range events {
		if e.Status == "SUCCEEDED" {
			target, exit := e.SplitExit()
			if e.SOCKSUser != "case-1" || e.CircuitID == "" || target != ln.Addr().String() || exit == "" {
				t.Errorf("stream: user %q circuit %q target %q exit %q", e.SOCKSUser, e.CircuitID, target, exit)
			}
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatal("no SUCCEEDED stream event")
	}

	// Stop the Tor client: the code under test must cope with a dead
	// SOCKS port.
	if err := n.StopClient(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", n.SOCKS); err == nil {
		c.Close()
		t.Error("the SOCKS port accepts connections after StopClient")
	}
	if err := n.StartClient(true); err != nil {
		t.Fatal(err)
	}
	phase, err := n.Control("GETINFO status/bootstrap-phase")
	if err != nil || !strings.Contains(phase, "PROGRESS=100") {
		t.Errorf("bootstrap phase after StartClient: %q, %v", phase, err)
	}
}
