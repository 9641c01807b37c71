package labtest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// A test starts a lab, asks dnsdist's XSalsa listener for its certificate,
// rotates it and asks again. Without the lab's programs it is skipped (and
// fails under CI=true).
func ExampleStartTB() {
	var t *testing.T // the test's *testing.T
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true, CertTTL: time.Hour})

	m := new(dns.Msg)
	m.SetQuestion(lab.ProviderName+".", dns.TypeTXT)
	r, err := dns.Exchange(m, lab.XSalsa)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(len(r.Answer), "certificate")

	certs, err := lab.Rotate("-b", fmt.Sprint(lab.BindOf(lab.XSalsa)), "--retire-old")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(certs)
}
