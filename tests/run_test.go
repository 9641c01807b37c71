package tests

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// runBinary runs dnscrypt-proxy with args to completion (at most 60 s) and
// returns its combined output and exit error.
func runBinary(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, proxyBinary(t), args...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out), errTimeout
	}
	return string(out), err
}
