// Package tests holds the end-to-end tests: the protocol core and the
// proxy against real programs (dnsdist, the ameshkov/dnscrypt server,
// unbound, microsocks, tor, dig, kdig), started by tests/labtest.
package tests

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

var (
	sharedOnce sync.Once
	shared     *labtest.Lab
	sharedErr  error

	torOnce sync.Once
	torNet  *tortest.Network
	torErr  error
)

// sharedTor returns the private Tor network shared by the tests (starting
// one takes 10-30 s). Its exits resolve host names with the shared lab's
// backend (lab.test), so the lab starts first. Tests that pause it or stop
// its client must not run in parallel with others.
func sharedTor(t *testing.T) *tortest.Network {
	t.Helper()
	lab := sharedLab(t)
	torOnce.Do(func() { torNet, torErr = tortest.Start(tortest.Options{ExitDNS: lab.Backend}) })
	if errors.Is(torErr, tortest.ErrUnavailable) {
		labtest.Require(t, "the private Tor network", torErr)
	}
	if torErr != nil {
		t.Fatalf("starting the private Tor network: %v", torErr)
	}
	return torNet
}

// sharedLab returns the lab shared by the tests that do not change it
// (no certificate rotation): starting one takes a second or two.
func sharedLab(t *testing.T) *labtest.Lab {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = labtest.Start(labtest.Options{}) })
	if errors.Is(sharedErr, labtest.ErrUnavailable) {
		labtest.Require(t, "the test lab", sharedErr)
	}
	if sharedErr != nil {
		t.Fatalf("starting the test lab: %v", sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	if torNet != nil {
		torNet.Close()
	}
	removeProxyBinary()
	os.Exit(code)
}
