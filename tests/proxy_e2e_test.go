package tests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// typeCase is a query of every record type test.
type typeCase struct {
	name string
	args []string // dig query arguments
}

// typeCases are the seeds' record types, plus NXDOMAIN and NODATA.
var typeCases = []typeCase{
	{"A", []string{"www.lab.test", "A"}},
	{"AAAA", []string{"www.lab.test", "AAAA"}},
	{"MX", []string{"lab.test", "MX"}},
	{"NS", []string{"lab.test", "NS"}},
	{"SOA", []string{"lab.test", "SOA"}},
	{"CNAME", []string{"alias.lab.test", "CNAME"}},
	{"CNAME chain", []string{"alias2.lab.test", "A"}},
	{"SRV", []string{"_sip._tcp.lab.test", "SRV"}},
	{"PTR", []string{"-x", "20.84.0.10"}}, // 127.0.84.10's would be answered locally
	{"TXT", []string{"multi.lab.test", "TXT"}},
	{"RRSIG", []string{"www.lab.test", "RRSIG", "+dnssec"}},
	{"A with DNSSEC", []string{"www.lab.test", "A", "+dnssec"}},
	{"wildcard", []string{"x.wild.lab.test", "A"}},
	{"NXDOMAIN", []string{"nosuch.lab.test", "A"}},
	{"NODATA", []string{"v6only.lab.test", "A"}},
}

// TestRecordTypes asks dig and kdig, over UDP and TCP, for every record
// type through the proxy in front of each real resolver, and compares each
// answer with the backend's own. Each resolver is named another way: the
// 1.x options -r/-N/-k, --stamp, and -R with a 1.x resolvers list (-L).
func TestRecordTypes(t *testing.T) {
	lab := sharedLab(t)
	csv := filepath.Join(t.TempDir(), "dnscrypt-resolvers.csv")
	if err := os.WriteFile(csv, []byte(resolversCSV("lab-mixed", lab.Mixed, lab)), 0o644); err != nil {
		t.Fatal(err)
	}
	upstreams := []struct {
		name    string
		args    []string
		logs    []string // lines the proxy must log
		dnsdist bool
	}{
		{"dnsdist es1", labArgs(lab, lab.XSalsa), nil, true},
		{"dnsdist es2, --stamp", []string{"--stamp=" + lab.StampXChaCha}, []string{"to " + lab.XChaCha + "\n"}, true},
		{"dnsdist two certs, -R -L", []string{"-R", "lab-mixed", "-L", csv}, []string{"to " + lab.Mixed + "\n",
			"+ DNS Security Extensions are supported", "+ Provider supposedly doesn't keep logs"}, true},
		{"go server, --stamp", []string{"--stamp=" + lab.StampGo}, []string{"to " + lab.Go + "\n"}, false},
	}
	wants := make([]*digResult, len(typeCases))
	for i, tc := range typeCases {
		wants[i] = runDig(t, "dig", append(append(at(t, lab.Backend), "+bufsize=1232"), tc.args...)...)
		if wants[i].Status == "" {
			t.Fatalf("%s: the backend did not answer:\n%s", tc.name, wants[i].Out)
		}
	}
	for _, up := range upstreams {
		t.Run(up.name, func(t *testing.T) {
			t.Parallel()
			p := startProxyBin(t, append(up.args, "--loglevel=7")...)
			for _, s := range up.logs {
				waitLog(t, p, s, 5*time.Second)
			}
			drops := 0
			for i, tc := range typeCases {
				want := wants[i]
				for _, tool := range []string{"dig", "kdig"} {
					for _, transport := range []string{"+notcp", "+tcp"} {
						got := digProxy(t, p, up.dnsdist, &drops, tool, append(append(at(t, p.Addr), transport), tc.args...)...)
						if got.Status != want.Status || !slices.Equal(got.Answer, want.Answer) {
							t.Errorf("%s %s %s: got %s %v, want %s %v\n%s", tc.name, tool, transport,
								got.Status, got.Answer, want.Status, want.Answer, got.Out)
						}
						if tc.name == "A with DNSSEC" && !slices.ContainsFunc(got.Answer, isRRSIG) {
							t.Errorf("%s %s %s: no RRSIG in the answer %v", tc.name, tool, transport, got.Answer)
						}
					}
				}
			}
		})
	}
}

func isRRSIG(rr string) bool { return strings.Contains(rr, "\tRRSIG\t") }

// dnsdistDrop is in the proxy's log line (with --loglevel=7 also when it
// repeats) for a DNSCrypt TCP connection that closed (EOF) or was reset
// without an answer.
const dnsdistDrop = `err="reading response length: `

// maxDrops bounds the queries digProxy asks again in one test.
const maxDrops = 3

// digProxy runs dig (or kdig) through the proxy p. dnsdist 1.7.3 closes a
// DNSCrypt TCP connection now and then without an answer, and the proxy
// then answers SERVFAIL. Measured with a plain DNSCrypt client, one query
// per connection: 8 to 11 in 3000 exchanges for signed SOA and RRSIG
// answers, none for A answers; none on dnsdist's plain DNS port and none
// from the Go server for the same queries; dnsdist counted the queries but
// neither a response nor an error (dumpStats). Under load it also resets a
// connection now and then. When dnsdist is p's resolver, such a query is
// asked once more, at most maxDrops times in all (counted in *drops). p
// must run with --loglevel=7.
func digProxy(t *testing.T, p *proxyProc, dnsdist bool, drops *int, tool string, args ...string) *digResult {
	t.Helper()
	before := strings.Count(p.output(), dnsdistDrop)
	r := runDig(t, tool, args...)
	if !dnsdist || r.Status != "SERVFAIL" {
		return r
	}
	// The log line comes before the answer, but reaches the buffer later.
	for deadline := time.Now().Add(time.Second); strings.Count(p.output(), dnsdistDrop) == before; {
		if time.Now().After(deadline) {
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
	if *drops++; *drops > maxDrops {
		t.Errorf("dnsdist closed %d DNSCrypt TCP connections without an answer: more than its usual faults", *drops)
		return r
	}
	t.Logf("%s %q: dnsdist closed the DNSCrypt TCP connection without an answer (its fault); asking again", tool, args)
	return runDig(t, tool, args...)
}

// resolversCSV returns a resolvers list in the format of dnscrypt-proxy
// 1.9.5's dnscrypt-resolvers.csv with one row: the lab resolver at addr,
// named name, DNSSEC and no logs.
func resolversCSV(name, addr string, lab *labtest.Lab) string {
	return "Name,Full name,Description,Location,Coordinates,URL,Version,DNSSEC validation,No logs,Namecoin," +
		"Resolver address,Provider name,Provider public key,Provider public key TXT record\n" +
		name + ",Lab resolver,\"dnsdist, in the test lab\",Loopback,,https://lab.test,1,yes,yes,no," +
		addr + "," + lab.ProviderName + "," + lab.ProviderKeyColon + ",\n"
}

// TestLargeAnswersReal: without EDNS over UDP a large answer comes back
// truncated; with EDNS 4096 whole; over TCP the 13 KB answer whole.
func TestLargeAnswersReal(t *testing.T) {
	lab := sharedLab(t)
	p := startProxyBin(t, append(labArgs(lab, lab.XSalsa), "--loglevel=7")...)
	drops := 0
	for _, tc := range []struct {
		name      string
		args      []string
		truncated bool
		records   int // answer records expected (with !truncated)
	}{
		{"medium, no EDNS, UDP", []string{"+noedns", "+ignore", "medium.lab.test", "TXT"}, true, 0},
		{"big, no EDNS, UDP", []string{"+noedns", "+ignore", "big.lab.test", "TXT"}, true, 0},
		{"medium, EDNS 1232, UDP", []string{"+bufsize=1232", "+ignore", "medium.lab.test", "TXT"}, false, -1},
		{"big, EDNS 4096, UDP", []string{"+bufsize=4096", "+ignore", "big.lab.test", "TXT"}, false, 13},
		{"many, EDNS 4096, UDP", []string{"+bufsize=4096", "+ignore", "many.lab.test", "A"}, false, 200},
		{"huge, TCP", []string{"+tcp", "huge.lab.test", "TXT"}, false, 50},
		{"big with DNSSEC, TCP", []string{"+tcp", "+dnssec", "big.lab.test", "TXT"}, false, 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := digProxy(t, p, true, &drops, "dig", append(at(t, p.Addr), tc.args...)...)
			if got.Status != "NOERROR" || got.flag("tc") != tc.truncated {
				t.Fatalf("status %s, flags %v, want TC=%v\n%s", got.Status, got.Flags, tc.truncated, got.Out)
			}
			if !tc.truncated && tc.records >= 0 && len(got.Answer) != tc.records {
				t.Fatalf("%d answer records, want %d", len(got.Answer), tc.records)
			}
			if !tc.truncated && tc.records < 0 && len(got.Answer) == 0 {
				t.Fatal("no answer records")
			}
		})
	}
}

// TestTCPOnlyReal: under --tcp-only a UDP query gets TC at once, dig's
// automatic retry over TCP gets the answer, and the certificates came over
// TCP (from the Go server: dnsdist 1.7 serves them over UDP only).
func TestTCPOnlyReal(t *testing.T) {
	t.Parallel() // the refused start below takes three certificate timeouts
	lab := sharedLab(t)
	p := startProxyBin(t, append(labArgs(lab, lab.Go), "--tcp-only")...)
	got := runDig(t, "dig", append(at(t, p.Addr), "+ignore", "www.lab.test", "A")...)
	if !got.flag("tc") || len(got.Answer) != 0 {
		t.Fatalf("UDP query under --tcp-only: flags %v, answer %v\n%s", got.Flags, got.Answer, got.Out)
	}
	got = runDig(t, "dig", append(at(t, p.Addr), "www.lab.test", "A")...)
	if got.flag("tc") || len(got.Answer) != 1 || !strings.Contains(got.Out, "Truncated, retrying in TCP mode") {
		t.Fatalf("dig's TCP retry: flags %v, answer %v\n%s", got.Flags, got.Answer, got.Out)
	}
	// dnsdist cannot serve certificates over TCP, so --tcp-only cannot get
	// one from it: the proxy never falls back to UDP.
	code, stdout, stderr, _ := runCLI(t, 90*time.Second, append(labArgs(lab, lab.XSalsa), "--tcp-only", "--test=0")...)
	if code != 3 || !strings.Contains(stderr, "Unable to retrieve server certificates") {
		t.Fatalf("--tcp-only --test against dnsdist, which serves certificates over UDP only: exit %d, want 3 and "+
			"\"Unable to retrieve server certificates\"\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
