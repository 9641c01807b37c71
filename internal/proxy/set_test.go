package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/logtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// TestSeveralResolvers: with three resolvers, one silent and one gone,
// every query is answered, by failover and hedging; the gone one is
// benched, the silent one, slower than its hedges, left alone; the status
// says so.
func TestSeveralResolvers(t *testing.T) {
	good := dnscrypttest.NewServer(t, nil)
	silent := dnscrypttest.NewServer(t, nil)
	gone := dnscrypttest.NewServer(t, nil)
	var buf logtest.Buffer
	rp := startProxy(t, good, Config{Resolvers: []upstream.Spec{spec(silent), spec(good), spec(gone)},
		Timeout: 6 * time.Second, Logger: testLoggerTo(t, &buf)})
	silent.SetFaults(dnscrypttest.Faults{Silent: true})
	gone.Close()
	for i := range 30 {
		network := []string{"udp", "tcp"}[i%2]
		r, err := rp.ask(t, network, query("www.example", dns.TypeA))
		if err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d over %s: %v %v", i, network, r, err)
		}
	}
	if !strings.Contains(buf.String(), "Resolver "+gone.Addr+" benched") {
		t.Errorf("%s not benched:\n%s", gone.Addr, buf.String())
	}
	if n := len(good.Queries()); n < 30 {
		t.Errorf("the good resolver answered %d of 30 queries", n)
	}
	if n := len(silent.Queries()); n > 4 {
		t.Errorf("the silent resolver got %d queries: still taken for a fast one", n)
	}
	rp.p.Status()
	for _, want := range []string{`msg="Resolver ` + good.Addr + `" state=up queries=`, `msg="Resolver ` + gone.Addr + `" state=benched`,
		"last_error=\"resolverset: another resolver answered first\""} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no %q in the status:\n%s", want, buf.String())
		}
	}
}
