package certs

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// checkGoroutines reports goroutines still running code of this package
// (or of miekg/dns, net or the SOCKS client it used) after all tests, as
// miekg/dns's leak_test.go does.
func checkGoroutines() error {
	var leaked []string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "testing.(*M).") || strings.Contains(g, "checkGoroutines") {
				continue
			}
			for _, pkg := range []string{"dnscrypt-proxy/certs.", "github.com/miekg/dns.", "x/net/internal/socks."} {
				if strings.Contains(g, pkg) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return nil
		}
	}
	return fmt.Errorf("leaked goroutines:\n\n%s", strings.Join(leaked, "\n\n"))
}
