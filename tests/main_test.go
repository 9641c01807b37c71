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
	"strconv"
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

	onionOnce sync.Once
	onionNet  *tortest.Network
	onionErr  error
	// onionResolvers are the targets of the onion services "leakdot" and
	// "leakdoh": forwarders to the lab's DoT and DoH servers, which
	// TestKindsLeak stops and starts again (a resolver that dies).
	onionResolvers map[string]*forwarder
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

// sharedOnionTor returns a second private Tor network shared by the tests
// (started once, 15-25 s), whose onion host publishes the lab's servers as
// onion services (see tortest.Options.OnionServices):
//
//	dot      :853 unbound's DoT (lab.BackendDoT)
//	dns      :53  unbound's plain DNS (lab.Backend)
//	dnsdist  :443 dnsdist's DoH (lab.DoHAddr)
//	unbound  :443 unbound's DoH (lab.BackendDoHAddr)
//	leakdot  :853 onionResolvers["leakdot"], a forwarder to lab.BackendDoT
//	leakdoh  :443 onionResolvers["leakdoh"], a forwarder to lab.DoHAddr
//
// Its exits resolve host names with the lab's backend, as sharedTor's do.
// It is not sharedTor's network: tests pause that one's relays and stop its
// client, after which an onion service may take a while to be reachable
// again.
func sharedOnionTor(t *testing.T) *tortest.Network {
	t.Helper()
	lab := sharedLab(t)
	onionOnce.Do(func() {
		services := []tortest.OnionService{
			{Name: "dot", Port: 853, Target: lab.BackendDoT},
			{Name: "dns", Port: 53, Target: lab.Backend},
			{Name: "dnsdist", Port: 443, Target: lab.DoHAddr},
			{Name: "unbound", Port: 443, Target: lab.BackendDoHAddr},
		}
		onionResolvers = map[string]*forwarder{}
		for _, r := range []struct {
			name   string
			port   int
			target string
		}{{"leakdot", 853, lab.BackendDoT}, {"leakdoh", 443, lab.DoHAddr}} {
			f := &forwarder{listen: "127.0.0.1:" + strconv.Itoa(freePort(t)), target: r.target}
			if onionErr = f.start(); onionErr != nil {
				return
			}
			onionResolvers[r.name] = f
			services = append(services, tortest.OnionService{Name: r.name, Port: r.port, Target: f.listen})
		}
		onionNet, onionErr = tortest.Start(tortest.Options{ExitDNS: lab.Backend, OnionServices: services, NoInfoLog: true})
	})
	if errors.Is(onionErr, tortest.ErrUnavailable) {
		labtest.Require(t, "the private Tor network", onionErr)
	}
	if onionErr != nil {
		t.Fatalf("starting the private Tor network with onion services: %v", onionErr)
	}
	return onionNet
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
	if onionNet != nil {
		if code != 0 {
			onionNet.Keep()
			fmt.Fprintf(os.Stderr, "tests failed: the onion Tor network's state (torrcs, logs) is kept in %s\n", onionNet.Dir)
		}
		if err := onionNet.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the onion Tor network: %v\n", err)
			code = cmp.Or(code, 1)
		}
	}
	for _, f := range onionResolvers {
		f.Stop()
	}
	if torSocketDir != "" {
		os.RemoveAll(torSocketDir)
	}
	removeProxyBinary()
	os.Exit(code)
}
