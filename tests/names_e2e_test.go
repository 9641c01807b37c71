package tests

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// dnsdistQueries returns the number of queries dnsdist received so far
// (its "queries" counter: every listener, the certificate queries too).
func dnsdistQueries(t *testing.T, lab *labtest.Lab) int {
	t.Helper()
	out, err := lab.Console("dumpStats()")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?:^|\s)queries\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no queries counter in dumpStats():\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// specialNameCases are queries for names that never leave the machine, and
// what dig must get: the status and, for localhost, the address.
var specialNameCases = []struct {
	args   []string
	status string
	answer string // suffix of the one answer record, "" for none
}{
	{[]string{"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion", "A"}, "NXDOMAIN", ""},
	{[]string{"www.example.com.exit", "A"}, "NXDOMAIN", ""},
	{[]string{"localhost", "A"}, "NOERROR", "\t127.0.0.1"},
	{[]string{"app.localhost", "AAAA"}, "NOERROR", "\t::1"},
	{[]string{"printer.local", "A"}, "NXDOMAIN", ""},
	{[]string{"db.corp.internal", "A"}, "NXDOMAIN", ""},
	{[]string{"router.home.arpa", "A"}, "NXDOMAIN", ""},
	{[]string{"x.invalid", "MX"}, "NXDOMAIN", ""},
	{[]string{"x.alt", "TXT"}, "NXDOMAIN", ""},
	{[]string{"-x", "192.168.1.1"}, "NXDOMAIN", ""},
	{[]string{"-x", "10.1.2.3"}, "NXDOMAIN", ""},
	{[]string{"-x", "169.254.1.1"}, "NXDOMAIN", ""},
	{[]string{"-x", "127.0.0.1"}, "NOERROR", "\tlocalhost."},
	{[]string{"-x", "fd00::1"}, "NXDOMAIN", ""},
	{[]string{"-x", "fe80::1"}, "NXDOMAIN", ""},
}

// TestSpecialNamesReal: special-use names get their local answers from the
// proxy binary over UDP and TCP, with dig and kdig, and dnsdist, its
// resolver, sees not one query for them; a --private-domain goes upstream.
func TestSpecialNamesReal(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true})
	p := startProxyBin(t, append(labArgs(lab, lab.XSalsa), "--private-domain=1.1.10.in-addr.arpa")...)
	waitAnswer(t, p, "www.lab.test")
	before := dnsdistQueries(t, lab)
	for _, tc := range specialNameCases {
		for _, tool := range []string{"dig", "kdig"} {
			for _, transport := range []string{"+notcp", "+tcp"} {
				got := runDig(t, tool, append(append(at(t, p.Addr), transport), tc.args...)...)
				if got.Status != tc.status || !got.flag("aa") || (tc.answer == "") != (len(got.Answer) == 0) ||
					tc.answer != "" && !strings.HasSuffix(got.Answer[0], tc.answer) {
					t.Errorf("%s %s %q: %s %v %v; want %s, aa, answer %q\n%s", tool, transport, tc.args, got.Status,
						got.Flags, got.Answer, tc.status, tc.answer, got.Out)
				}
			}
		}
	}
	if after := dnsdistQueries(t, lab); after != before {
		t.Fatalf("dnsdist received %d queries for special-use names", after-before)
	}
	// The private domain goes upstream (where the backend, unbound,
	// answers it from its own local zones).
	runDig(t, "dig", append(at(t, p.Addr), "-x", "10.1.1.7")...)
	if after := dnsdistQueries(t, lab); after != before+1 {
		t.Fatalf("dnsdist received %d queries for the private domain, want 1", after-before)
	}
}

// TestRebindingReal: through a SOCKS proxy (microsocks, to the Go server)
// the proxy removes internal addresses from answers to public names by
// default, and says so; --private-domain and --no-rebind-protection keep
// them; directly, --rebind-protection turns the filter on.
func TestRebindingReal(t *testing.T) {
	lab := sharedLab(t)
	socks := []string{"--proxy=socks5://" + lab.Socks, "--isolation=none"}
	for _, tc := range []struct {
		name string
		args []string
		want map[string][]string // name and type -> the answer's addresses
	}{
		{"SOCKS, default", socks, map[string][]string{
			"rebind.lab.test A":      {"20.84.0.11"},
			"rebind6.lab.test AAAA":  nil,
			"pub.lab.test A":         {"20.84.0.10"},
			"special.lab.test A":     {"20.84.0.12"},
			"special6.lab.test AAAA": {"2a02:84::12"},
		}},
		{"SOCKS, --private-domain", append(slices.Clip(socks), labPrivate), map[string][]string{
			"rebind.lab.test A": {"10.1.2.3", "127.0.0.1", "192.168.1.1", "20.84.0.11"},
		}},
		{"SOCKS, --no-rebind-protection", append(slices.Clip(socks), "--no-rebind-protection"), map[string][]string{
			"rebind6.lab.test AAAA": {"fd00::1", "fe80::1"},
		}},
		{"direct, default", nil, map[string][]string{
			"rebind.lab.test A": {"10.1.2.3", "127.0.0.1", "192.168.1.1", "20.84.0.11"},
		}},
		{"direct, --rebind-protection", []string{"--rebind-protection"}, map[string][]string{
			"rebind.lab.test A": {"20.84.0.11"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxyBin(t, append(labArgs(lab, lab.Go), tc.args...)...)
			waitAnswer(t, p, "pub.lab.test")
			filtered := false
			for q, want := range tc.want {
				name, qtype, _ := strings.Cut(q, " ")
				for _, transport := range []string{"+notcp", "+tcp"} {
					got := runDig(t, "dig", append(at(t, p.Addr), transport, name, qtype)...)
					var addrs []string
					for _, rr := range got.Answer {
						f := strings.Fields(rr)
						addrs = append(addrs, f[len(f)-1])
					}
					slices.Sort(addrs)
					if got.Status != "NOERROR" || !slices.Equal(addrs, want) {
						t.Errorf("%s %s: %s %v, want NOERROR %v\n%s", q, transport, got.Status, addrs, want, got.Out)
					}
				}
				filtered = filtered || strings.HasPrefix(name, "rebind") && len(want) < 2
			}
			if filtered {
				waitLog(t, p, "Removed internal addresses from an answer", 5*time.Second)
				waitLog(t, p, "rebind", 0)
			} else if strings.Contains(p.output(), "Removed internal addresses") {
				t.Fatalf("a removal was logged with the filter off or the name exempt:\n%s", p.output())
			}
		})
	}
}

// TestQueryErrorsReal: what dig and kdig get from the proxy binary for
// queries it cannot forward, over UDP and TCP: FORMERR, BADVERS, NOTIMP,
// and for a cookie-only query NOERROR with a server cookie; under
// --tcp-only too. A client's cookie gets a server cookie back, and never
// reaches the resolver.
func TestQueryErrorsReal(t *testing.T) {
	lab := sharedLab(t)
	for _, mode := range []struct {
		name string
		args []string
	}{{"default", nil}, {"--tcp-only", []string{"--tcp-only"}}} {
		t.Run(mode.name, func(t *testing.T) {
			// The Go server: it serves its certificate over TCP too.
			p := startProxyBin(t, append(labArgs(lab, lab.Go), mode.args...)...)
			waitAnswer(t, p, "www.lab.test")
			for _, tc := range []struct {
				tool   string
				args   []string
				status string
				want   []string // in dig's output
			}{
				{"dig", []string{"+header-only", "+cookie"}, "NOERROR", []string{"QUERY: 0", "; COOKIE: ", "(good)"}},
				{"dig", []string{"+header-only", "+nocookie"}, "FORMERR", []string{"QUERY: 0, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 1"}},
				{"dig", []string{"+header-only", "+noedns"}, "FORMERR", []string{"ADDITIONAL: 0"}},
				{"dig", []string{"www.lab.test", "A", "+edns=1", "+noednsneg"}, "BADVERS", []string{"EDNS: version: 0", "QUERY: 1"}},
				{"kdig", []string{"www.lab.test", "A", "+edns=1"}, "BADVERS", nil},
				{"dig", []string{"www.lab.test", "SOA", "+opcode=notify"}, "NOTIMP", []string{"opcode: NOTIFY"}},
				{"dig", []string{"www.lab.test", "A", "+cookie=0102030405"}, "FORMERR", []string{"QUERY: 1"}},
			} {
				for _, transport := range []string{"+notcp", "+tcp"} {
					got := runDig(t, tc.tool, append(append(at(t, p.Addr), transport), tc.args...)...)
					if got.Status != tc.status {
						t.Errorf("%s %s %q: %s, want %s\n%s", tc.tool, transport, tc.args, got.Status, tc.status, got.Out)
						continue
					}
					for _, w := range tc.want {
						if !strings.Contains(got.Out, w) {
							t.Errorf("%s %s %q: no %q in\n%s", tc.tool, transport, tc.args, w, got.Out)
						}
					}
				}
			}
			// A client cookie: the answer carries the proxy's server cookie,
			// which dig checks ("good"), over TCP and (unless --tcp-only) UDP.
			got := runDig(t, "dig", append(at(t, p.Addr), "+tcp", "+cookie", "www.lab.test", "A")...)
			if got.Status != "NOERROR" || len(got.Answer) == 0 || !strings.Contains(got.Out, "(good)") {
				t.Errorf("dig +cookie: %s\n%s", got.Status, got.Out)
			}
		})
	}
}

// TestCookiesNeverLeaveReal: a client cookie (dig sends one by default, as
// BIND does as a forwarder, derived from a long-lived secret: a resolver
// seeing it could link queries across circuits) is answered by the proxy
// binary with its own server cookie, and the resolver (an in-process one
// that records the decrypted queries) never sees a cookie.
func TestCookiesNeverLeaveReal(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	p := startProxyBin(t, resolverArgs(srv)...)
	waitAnswer(t, p, "www.example")
	for _, transport := range []string{"+notcp", "+tcp"} {
		for range 2 {
			got := runDig(t, "dig", append(at(t, p.Addr), transport, "+cookie=0102030405060708", "www.example", "A")...)
			if got.Status != "NOERROR" || !strings.Contains(got.Out, "; COOKIE: 0102030405060708") || !strings.Contains(got.Out, "(good)") {
				t.Fatalf("dig %s +cookie: %s\n%s", transport, got.Status, got.Out)
			}
		}
	}
	for _, q := range srv.Queries() {
		if opt := q.Msg.IsEdns0(); opt != nil {
			for _, o := range opt.Option {
				if o.Option() == dns.EDNS0COOKIE {
					t.Fatalf("a cookie reached the resolver: %v", q.Msg)
				}
			}
		}
	}
}
