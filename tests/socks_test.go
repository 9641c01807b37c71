package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// socksConnects counts the connections to target that the lab's microsocks
// logged in log ("socks.log" or "socks-auth.log" in the lab's directory).
func socksConnects(t *testing.T, lab *labtest.Lab, log, target string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lab.Dir, log))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "connected to "+target+"\n")
}

// TestSOCKSReal: --proxy through microsocks, without and with a username
// and password, to the Go server (it serves its certificate over TCP, all
// SOCKS carries). Answers work, over UDP and TCP from the client, and the
// certificate and every query went through microsocks (its log counts a
// connection for each). A wrong password gives SERVFAIL and a log line
// saying why.
//
// A generic SOCKS server does not isolate by credentials as Tor does: the
// default options (--isolation=epoch) must work through it all the same,
// as --isolation=none does, with one warning that circuits cannot be
// isolated (microsocks without authentication picks "no authentication";
// with one, the URL's credentials are an account, sent as they are).
func TestSOCKSReal(t *testing.T) {
	lab := sharedLab(t)
	for _, tc := range []struct {
		name, proxy, log string
		isolation        []string
		warning          string // the one warning that circuits are not isolated, and why
	}{
		{"no authentication", "socks5://" + lab.Socks, "socks.log", []string{"--isolation=none"}, ""},
		{"username and password", "socks5://" + lab.SocksUser + ":" + lab.SocksPass + "@" + lab.SocksAuth, "socks-auth.log",
			[]string{"--isolation=none"}, ""},
		{"no authentication, default isolation", "socks5://" + lab.Socks, "socks.log", nil, "it takes no authentication"},
		{"username and password, default isolation", "socks5://" + lab.SocksUser + ":" + lab.SocksPass + "@" + lab.SocksAuth,
			"socks-auth.log", nil, "the proxy URL's username and password are an account on it, sent as they are"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := socksConnects(t, lab, tc.log, lab.Go)
			p := startProxyBin(t, append(append(labArgs(lab, lab.Go), "--proxy="+tc.proxy, labPrivate), tc.isolation...)...)
			waitAnswer(t, p, "www.lab.test")
			waitLog(t, p, "[INFO] Server certificate with serial #", 0)
			askLab(t, p)
			// The certificate, waitAnswer's answered query and askLab's two.
			const want = 4
			var got int
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if got = socksConnects(t, lab, tc.log, lab.Go) - before; got >= want || time.Now().After(deadline) {
					break
				}
			}
			if got < want {
				t.Fatalf("microsocks logged %d connections to %s, want at least %d (the certificate and three queries)", got, lab.Go, want)
			}
			addr := lab.Socks
			if tc.log == "socks-auth.log" {
				addr = lab.SocksAuth
			}
			warning := "[WARNING] SOCKS proxy " + addr + ": no isolation by credentials"
			if n := strings.Count(p.output(), warning); tc.warning == "" && n != 0 || tc.warning != "" && n != 1 {
				t.Fatalf("%d warnings %q, want %d:\n%s", n, warning, min(len(tc.warning), 1), p.output())
			}
			if tc.warning != "" {
				waitLog(t, p, warning+" (no new Tor circuit per epoch or query): "+tc.warning+"; client keys still change", 0)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		p := startProxyBin(t, append(labArgs(lab, lab.Go), "--timeout=3s", "--isolation=none",
			"--proxy=socks5://"+lab.SocksUser+":wrong@"+lab.SocksAuth)...)
		for range 2 {
			start := time.Now()
			r, err := query("tcp", p.Addr, "www.lab.test")
			if err != nil || r.Rcode != dns.RcodeServerFailure || time.Since(start) > 5*time.Second {
				t.Fatalf("got %v, %v after %v; want SERVFAIL within 5 s", r, err, time.Since(start))
			}
		}
		waitLog(t, p, "[ERROR] Unable to retrieve server certificates", 15*time.Second)
		waitLog(t, p, "socks5: proxy "+lab.SocksAuth+" rejected the credentials", 0)
	})
}
