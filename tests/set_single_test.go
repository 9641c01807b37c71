package tests

import (
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/bench/setload/loadgen"
)

// TestSingleResolverStopped is TestSetMemberFaults' "stopped" case with
// the stopped resolver alone, the run the set is compared with: the same
// load, the Go DNSCrypt server stopped (SIGSTOP) for 10 s, then resumed.
// The proxy fails closed and never silent: every query gets an answer
// (none lost), those asked while the resolver is stopped a SERVFAIL within
// the request's deadline (--timeout, 2 s here, and a margin for the
// machine), and queries are answered again once it is resumed.
func TestSingleResolverStopped(t *testing.T) {
	lab := sharedLab(t)
	g := startGoResolver(t, lab)
	const timeout = 2 * time.Second
	p := startProxyBin(t, "--stamp="+g.Stamp, "--timeout=2s")
	waitAnswer(t, p, "www.lab.test")
	l := startLoad(t, p.Addr, setLoadRate)
	waitFor(t, "two seconds of load", func() bool { return l.at() > 2*time.Second })

	faultAt := l.at()
	g.signal(t, syscall.SIGSTOP)
	time.Sleep(10 * time.Second) // the length of the fault, not a wait for an event
	g.signal(t, syscall.SIGCONT)
	healedAt := l.at()
	waitAnswer(t, p, "www.lab.test")
	answeredAt := l.at()
	waitFor(t, "two more seconds of load", func() bool { return l.at() > answeredAt+2*time.Second })
	res := l.stop()
	logPhases(t, res, faultAt, healedAt, [3]string{"before the stop", "10 s stopped, one resolver", "after SIGCONT"})

	stopped := res.Summary(faultAt+timeout, healedAt)
	if all := res.Summary(0, res.Span()); all.Lost != 0 {
		t.Errorf("%d queries lost (no answer at all); want every one answered", all.Lost)
	}
	if stopped.Servfail() == 0 || stopped.Servfail()+stopped.Rcodes["NOERROR"] != stopped.Sent {
		t.Errorf("while the only resolver was stopped: %v; want SERVFAIL (and nothing else but NOERROR)", stopped)
	}
	for _, r := range res.Records {
		if r.Rcode == dns.RcodeServerFailure && r.Took > timeout+time.Second {
			t.Errorf("a SERVFAIL after %v, sent at %v: want it within the 2 s deadline", r.Took.Round(time.Millisecond), r.Sent.Round(time.Millisecond))
			break
		}
		if r.Rcode != loadgen.NoAnswer && r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeServerFailure {
			t.Errorf("rcode %d for the query sent at %v", r.Rcode, r.Sent.Round(time.Millisecond))
			break
		}
	}
	if after := res.Summary(res.Span()-time.Second, res.Span()); after.Rcodes["NOERROR"] != after.Sent || after.Sent == 0 {
		t.Errorf("the last second of load, after SIGCONT: %v; want every query NOERROR", after)
	}
}
