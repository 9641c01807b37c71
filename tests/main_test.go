// Package tests holds the end-to-end tests: the protocol core and the
// proxy against real programs (dnsdist, the ameshkov/dnscrypt server,
// unbound, microsocks, tor, dig, kdig), started by tests/labtest.
package tests

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	// torUnixSOCKS is the shared Tor client's SocksPort on a Unix-domain
	// socket (IsolateSOCKSAuth too), in torSocketDir.
	torUnixSOCKS, torSocketDir string
)

// sharedTor returns the private Tor network shared by the tests (starting
// one takes 10-30 s). Its exits resolve host names with the shared lab's
// backend (lab.test), so the lab starts first. Tests that pause it or stop
// its client must not run in parallel with others.
func sharedTor(t *testing.T) *tortest.Network {
	t.Helper()
	lab := sharedLab(t)
	torOnce.Do(func() {
		// A second SocksPort on a Unix-domain socket, in a private
		// directory as tor requires.
		if torSocketDir, torErr = os.MkdirTemp("", "tor-socks"); torErr != nil {
			return
		}
		torUnixSOCKS = filepath.Join(torSocketDir, "socks")
		torNet, torErr = tortest.Start(tortest.Options{ExitDNS: lab.Backend,
			ClientTorrc: []string{"SocksPort unix:" + torUnixSOCKS + " IsolateSOCKSAuth"}})
	})
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

// TestMain stops the shared lab and Tor network at the end. When a test
// failed, their state directories (logs, configurations) stay for a look.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if code != 0 {
			shared.Keep()
			fmt.Fprintf(os.Stderr, "tests failed: the shared lab's state (logs, configurations) is kept in %s\n", shared.Dir)
		}
		if err := shared.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the shared lab: %v\n", err)
			code = cmp.Or(code, 1)
		}
	}
	if torNet != nil {
		if code != 0 {
			torNet.Keep()
			fmt.Fprintf(os.Stderr, "tests failed: the shared Tor network's state (torrcs, logs) is kept in %s\n", torNet.Dir)
		}
		if err := torNet.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the shared Tor network: %v\n", err)
			code = cmp.Or(code, 1)
		}
	}
	if torSocketDir != "" {
		os.RemoveAll(torSocketDir)
	}
	removeProxyBinary()
	os.Exit(code)
}
