// Package tests holds the end-to-end tests: the protocol core and the
// proxy against real programs (dnsdist, the ameshkov/dnscrypt server,
// unbound, microsocks, tor, dig, kdig), started by tests/labtest.
package tests

import (
	"os"
	"sync"
	"testing"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

var (
	sharedOnce sync.Once
	shared     *labtest.Lab
	sharedErr  error
)

// sharedLab returns the lab shared by the tests that do not change it
// (no certificate rotation): starting one takes a second or two.
func sharedLab(t *testing.T) *labtest.Lab {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = labtest.Start(labtest.Options{}) })
	labtest.Require(t, "the test lab", sharedErr)
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	os.Exit(code)
}
