package tortest_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

// A test that sends TCP through Tor to a service on 127.0.0.1 and checks
// which circuit carried it.
func ExampleStartTB() {
	var t *testing.T // the test's *testing.T
	n := tortest.StartTB(t, tortest.Options{})

	ln, _ := net.Listen("tcp4", "127.0.0.1:0") // the service
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events, _ := n.WatchStreams(ctx)

	d, _ := proxy.SOCKS5("tcp", n.SOCKS, &proxy.Auth{User: "case-1", Password: "x"}, proxy.Direct)
	c, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for e := range events {
		if e.Status == "SUCCEEDED" {
			target, exit := e.SplitExit()
			fmt.Println(e.SOCKSUser, e.CircuitID, target, exit)
			break
		}
	}
}

// Stop the Tor client, check that the code under test copes with a dead
// SOCKS port, and bring it back.
func ExampleNetwork_StopClient() {
	var t *testing.T // the test's *testing.T
	n := tortest.StartTB(t, tortest.Options{})
	if err := n.StopClient(); err != nil {
		t.Fatal(err)
	}
	// ... SOCKS CONNECTs to n.SOCKS are refused now ...
	if err := n.StartClient(true); err != nil {
		t.Fatal(err)
	}
	phase, _ := n.Control("GETINFO status/bootstrap-phase")
	fmt.Println(phase) // NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"
}
