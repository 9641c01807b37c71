package tests

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// typeCases are the seeds' record types, plus NXDOMAIN and NODATA.
var typeCases = []struct {
	name string
	args []string // dig query arguments
}{
	{"A", []string{"www.lab.test", "A"}},
	{"AAAA", []string{"www.lab.test", "AAAA"}},
	{"MX", []string{"lab.test", "MX"}},
	{"NS", []string{"lab.test", "NS"}},
	{"SOA", []string{"lab.test", "SOA"}},
	{"CNAME", []string{"alias.lab.test", "CNAME"}},
	{"CNAME chain", []string{"alias2.lab.test", "A"}},
	{"SRV", []string{"_sip._tcp.lab.test", "SRV"}},
	{"PTR", []string{"-x", "127.0.84.10"}},
	{"TXT", []string{"multi.lab.test", "TXT"}},
	{"RRSIG", []string{"www.lab.test", "RRSIG", "+dnssec"}},
	{"A with DNSSEC", []string{"www.lab.test", "A", "+dnssec"}},
	{"wildcard", []string{"x.wild.lab.test", "A"}},
	{"NXDOMAIN", []string{"nosuch.lab.test", "A"}},
	{"NODATA", []string{"v6only.lab.test", "A"}},
}

// TestRecordTypes asks dig and kdig, over UDP and TCP, for every record
// type through the proxy in front of each real resolver, and compares each
// answer with the backend's own.
func TestRecordTypes(t *testing.T) {
	lab := sharedLab(t)
	upstreams := []struct{ name, addr string }{
		{"dnsdist es1", lab.XSalsa}, {"dnsdist es2", lab.XChaCha}, {"dnsdist two certs", lab.Mixed},
	}
	if lab.Go != "" {
		upstreams = append(upstreams, struct{ name, addr string }{"go server", lab.Go})
	}
	for _, up := range upstreams {
		t.Run(up.name, func(t *testing.T) {
			t.Parallel()
			p := startProxyBin(t, labArgs(lab, up.addr)...)
			for _, tc := range typeCases {
				want := runDig(t, "dig", append(append(at(t, lab.Backend), "+bufsize=1232"), tc.args...)...)
				if want.Status == "" {
					t.Fatalf("%s: the backend did not answer:\n%s", tc.name, want.Out)
				}
				for _, tool := range []string{"dig", "kdig"} {
					for _, transport := range []string{"+notcp", "+tcp"} {
						got := runDig(t, tool, append(append(at(t, p.Addr), transport), tc.args...)...)
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

// TestLargeAnswersReal: without EDNS over UDP a large answer comes back
// truncated; with EDNS 4096 whole; over TCP the 13 KB answer whole.
func TestLargeAnswersReal(t *testing.T) {
	lab := sharedLab(t)
	p := startProxyBin(t, labArgs(lab, lab.XSalsa)...)
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
			got := runDig(t, "dig", append(at(t, p.Addr), tc.args...)...)
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
