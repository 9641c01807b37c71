package labtest

import (
	"errors"
	"os"
	"strconv"
	"testing"
)

// StartTB starts a lab for a test or benchmark and stops it in tb.Cleanup.
// If the lab's programs are missing ([ErrUnavailable]) it calls [Require],
// which skips the test, or fails it under CI=true; any other start failure
// fails the test. When the test failed, the state directory with the logs is
// kept and its path logged.
func StartTB(tb testing.TB, opts Options) *Lab {
	tb.Helper()
	l, err := Start(opts)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			Require(tb, "test lab", err)
		}
		tb.Fatalf("starting the test lab: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			l.Keep()
			tb.Logf("lab state (logs, configs) kept in %s", l.Dir)
		}
		if err := l.Close(); err != nil {
			tb.Errorf("stopping the test lab: %v", err)
		}
	})
	return l
}

// Require stops the test if err is not nil: it fails it (tb.Fatalf) when the
// environment variable CI is true, and skips it (tb.Skipf) otherwise. So a
// missing real component skips a test on a developer's machine but fails in
// CI. what names the component, as in Require(tb, "tor", err).
func Require(tb testing.TB, what string, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if InCI() {
		tb.Fatalf("%s: %v (CI=true: a missing real component is a failure)", what, err)
		return
	}
	tb.Skipf("skipping: %s unavailable: %v (tests/lab/install.sh installs the lab; under CI=true this fails)", what, err)
}

// InCI reports whether the environment variable CI is set to a true value
// ("true", "1", ...), as CI systems do.
func InCI() bool { return BoolEnv("CI") }

// BoolEnv reports whether the environment variable name holds a true value
// for strconv.ParseBool ("1", "true", ...), as LAB_KEEP_STATE=1.
func BoolEnv(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}
