//go:build race

package tests

// raceEnabled reports whether this test binary has the race detector: the
// dnscrypt-proxy binary under test then gets it too.
const raceEnabled = true
