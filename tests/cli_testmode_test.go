package tests

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/socks5test"
)

// TestCLITestMode: --test=MARGIN exit statuses 0, 4, 2 and 3, as 1.x.
func TestCLITestMode(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		specs  []dnscrypttest.CertSpec
		margin string
		code   int
		stdout string
		stderr string
	}{
		{"valid", nil, "60", 0, "Server key fingerprint is", ""},
		{"valid, zero margin", nil, "0", 0, "Chosen certificate #1 is valid from", ""},
		{"ends within the margin", []dnscrypttest.CertSpec{{NotAfter: now.Add(30 * time.Minute)}}, "60", 4, "",
			"[WARNING] The certificate is not valid for the given safety margin"},
		{"best cert ends within the margin", []dnscrypttest.CertSpec{{Serial: 1, NotAfter: now.Add(48 * time.Hour)}, {Serial: 2, NotAfter: now.Add(10 * time.Minute)}}, "60", 4, "",
			"not valid for the given safety margin"},
		{"only expired", []dnscrypttest.CertSpec{{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}}, "60", 2, "",
			"[ERROR] No useable certificates found"},
		{"only a bad signature", []dnscrypttest.CertSpec{{BadSignature: true}}, "0", 2, "", "No useable certificates found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil, tt.specs...)
			args := append([]string{"--test=" + tt.margin}, resolverArgs(srv)...)
			code, stdout, stderr, _ := runCLI(t, 60*time.Second, args...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("got exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d, %q, %q", code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
			if srv.CertQueries() == 0 {
				t.Error("no certificate query reached the resolver")
			}
			if n := len(srv.Queries()); n != 0 {
				t.Errorf("--test sent %d DNS queries", n)
			}
		})
	}
}

// TestCLITestModeWideMargin: --test=100000 (69 days, more than the
// certificate's validity) fails with exit 4 and shows the validity period
// (1.x printed its start twice: "[1799996400..1799996400]").
func TestCLITestModeWideMargin(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	code, stdout, stderr, _ := runCLI(t, 60*time.Second, append([]string{"--test=100000"}, resolverArgs(srv)...)...)
	m := regexp.MustCompile(`\[WARNING\] The certificate is not valid for the given safety margin: a margin of 6000000 s is wider than the certificate validity period \[(\d+)\.\.(\d+)\] \((\d+) s\)`).FindStringSubmatch(stderr)
	if code != 4 || m == nil {
		t.Fatalf("got exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 4 and the validity period", code, stdout, stderr)
	}
	begin, _ := strconv.ParseInt(m[1], 10, 64)
	end, _ := strconv.ParseInt(m[2], 10, 64)
	if length, _ := strconv.ParseInt(m[3], 10, 64); begin >= end || end-begin != length {
		t.Errorf("validity period [%d..%d] (%d s)", begin, end, length)
	}
	if strings.Contains(stdout, "Chosen certificate") {
		t.Errorf("a certificate was chosen:\n%s", stdout)
	}
}

// TestCLITestModeUnreachable: a closed port gives exit 3 after three
// attempts, in bounded time.
func TestCLITestModeUnreachable(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil) // for a provider key only
	port := freePort(t)
	args := []string{"-t", "60", "-r", "127.0.0.1:" + strconv.Itoa(port), "-N", dnscrypttest.ProviderName,
		"-k", certs.Fingerprint(srv.ProviderKey)}
	code, stdout, stderr, took := runCLI(t, 60*time.Second, args...)
	if code != 3 || strings.Count(stderr, "[ERROR] Unable to retrieve server certificates") != 3 {
		t.Errorf("got exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 3 after 3 attempts", code, stdout, stderr)
	}
	if took > 30*time.Second {
		t.Errorf("took %v", took)
	}
	t.Logf("exit 3 after %v", took.Round(time.Millisecond))
}

// TestCLITestModeThroughSOCKS: --test through --proxy and --tor: the
// certificate query goes through the SOCKS server, by name.
func TestCLITestModeThroughSOCKS(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	_, port, _ := net.SplitHostPort(srv.Addr)
	socks := socks5test.NewServer(t, socks5test.Config{AnyCredentials: true, Hosts: map[string]string{"resolver.test": "127.0.0.1"}})
	for _, mode := range [][]string{
		{"--proxy=socks5://" + socks.Addr},
		{"--tor", "--proxy=" + socks.Addr, "--isolation=query"},
	} {
		before := len(socks.Requests())
		args := append(mode, "--test=10", "--resolver-address=resolver.test:"+port, "--provider-name="+dnscrypttest.ProviderName,
			"--provider-key="+certs.Fingerprint(srv.ProviderKey))
		code, stdout, stderr, _ := runCLI(t, 60*time.Second, args...)
		if code != 0 || !strings.Contains(stdout, "Server key fingerprint is") {
			t.Errorf("%q: got exit %d\nstdout:\n%s\nstderr:\n%s", mode, code, stdout, stderr)
		}
		reqs := socks.Requests()[before:]
		if len(reqs) == 0 || reqs[0].Target != "resolver.test:"+port {
			t.Errorf("%q: SOCKS requests %+v, want one to resolver.test:%s", mode, reqs, port)
		}
	}
	// Through a SOCKS server that refuses: exit 3, never a direct query.
	refusing := socks5test.NewServer(t, socks5test.Config{Refuse: 5})
	before := srv.CertQueries()
	code, _, stderr, _ := runCLI(t, 60*time.Second, "--proxy=socks5://"+refusing.Addr, "--test=10",
		"--resolver-address="+srv.Addr, "--provider-name="+dnscrypttest.ProviderName, "--provider-key="+certs.Fingerprint(srv.ProviderKey))
	if code != 3 {
		t.Errorf("refusing proxy: exit %d\n%s", code, stderr)
	}
	if srv.CertQueries() != before {
		t.Error("a certificate query reached the resolver directly")
	}
}
