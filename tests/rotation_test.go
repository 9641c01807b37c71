package tests

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// TestRotationUnderLoad rotates dnsdist's certificate through its console
// twice while clients query the proxy without pause, the way a resolver
// operator rotates keys (add the new one, stop advertising the old one,
// remove it once clients moved): not one query may fail. SIGUSR1 makes the
// proxy re-check the certificates instead of waiting for its hourly timer.
func TestRotationUnderLoad(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true})
	p := startProxyBin(t, labArgs(lab, lab.XSalsa)...)
	bind := strconv.Itoa(lab.BindOf(lab.XSalsa))

	var total, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(stopLoad) // before the proxy's cleanup, should the test fail early
	names := []string{"www.lab.test", "lab.test", "mail.lab.test", "alias.lab.test", "x.wild.lab.test"}
	for w := range 4 {
		wg.Go(func() {
			c := &dns.Client{Net: []string{"udp", "tcp"}[w%2], Timeout: 5 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, _, err := c.Exchange(msg(names[i%len(names)], dns.TypeA), p.Addr)
				total.Add(1)
				if err != nil || r.Rcode != dns.RcodeSuccess {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, strings.TrimSpace(strconv.Quote(errString(r, err))))
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	// A new key next to the old one; the proxy moves to it.
	if out, err := lab.Rotate("-b", bind); err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	p.signal(syscall.SIGUSR1)
	waitLog(t, p, "Chosen certificate #2", 15*time.Second)
	time.Sleep(300 * time.Millisecond)

	// Another key; the old ones are no longer advertised but still work.
	if out, err := lab.Rotate("-b", bind, "--retire-old"); err != nil {
		t.Fatalf("rotate --retire-old: %v\n%s", err, out)
	}
	p.signal(syscall.SIGUSR1)
	waitLog(t, p, "Chosen certificate #3", 15*time.Second)
	time.Sleep(300 * time.Millisecond)

	// The retired keys go away for good.
	for _, serial := range []string{"1", "2"} {
		if out, err := lab.Console("getDNSCryptBind(" + bind + "):removeInactiveCertificate(" + serial + ")"); err != nil {
			t.Fatalf("removing certificate %s: %v\n%s", serial, err, out)
		}
	}
	time.Sleep(500 * time.Millisecond)
	stopLoad()

	if failed.Load() != 0 {
		t.Fatalf("%d of %d queries failed during the rotations; first: %v", failed.Load(), total.Load(), firstErr.Load())
	}
	if total.Load() < 100 {
		t.Fatalf("only %d queries ran: the load did not run", total.Load())
	}
	t.Logf("%d queries through two rotations, none failed", total.Load())
}

func errString(r *dns.Msg, err error) string {
	if err != nil {
		return err.Error()
	}
	return dns.RcodeToString[r.Rcode]
}
