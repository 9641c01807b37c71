package labtest_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// TestUsage runs what the package documentation shows: a test starts a
// lab, asks dnsdist's XSalsa listener for its certificate, rotates it and
// asks again. Without the lab's programs it is skipped (and fails under
// CI=true).
func TestUsage(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true, CertTTL: time.Hour})

	certificates := func() int {
		m := new(dns.Msg)
		m.SetQuestion(lab.ProviderName+".", dns.TypeTXT)
		r, err := dns.Exchange(m, lab.XSalsa)
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Answer)
	}
	if n := certificates(); n != 1 {
		t.Errorf("%d certificates before the rotation, want 1", n)
	}

	list, err := lab.Rotate("-b", strconv.Itoa(lab.BindOf(lab.XSalsa)), "--retire-old")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "bind=0 serial=2 es=1 active=true") {
		t.Errorf("after the rotation:\n%s\nwant bind 0 with serial 2", list)
	}
	if n := certificates(); n != 1 { // the old one retired
		t.Errorf("%d certificates after the rotation, want 1", n)
	}
}
