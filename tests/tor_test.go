package tests

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

// torArgs are the options that send everything through the private Tor
// network's SOCKS port with Tor's defaults (--tor), and keep the lab's
// internal addresses in answers for lab.test (see labPrivate).
func torArgs(n *tortest.Network) []string {
	return []string{"--tor", "--proxy=socks5://" + n.SOCKS, labPrivate}
}

// labPrivate exempts lab.test from the rebinding protection, on by default
// through a proxy: most of its names point at 127.0.84.x. The tests of the
// protection itself use the lab's public-looking names (pub.lab.test,
// rebind.lab.test) without it.
const labPrivate = "--private-domain=lab.test"

// TestTorRecordTypes: with only --tor and the resolver, every record type
// resolves through the private Tor network, over UDP and TCP from dig, and
// each answer equals the backend's own. The resolver is the Go server: it
// serves its certificate over TCP, which is all Tor carries. Two more
// modes ask some of the types: with --optimistic-data, and with the
// resolver given by host name, which goes to Tor as such (the exits look
// it up in lab.test) and is never resolved locally.
func TestTorRecordTypes(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	_, goPort, err := net.SplitHostPort(lab.Go)
	if err != nil {
		t.Fatal(err)
	}
	byName := net.JoinHostPort("resolver.lab.test", goPort)
	some := slices.DeleteFunc(slices.Clone(typeCases), func(tc typeCase) bool {
		return !slices.Contains([]string{"A", "MX", "TXT", "SRV", "RRSIG", "NXDOMAIN"}, tc.name)
	})
	wants := map[string]*digResult{}
	for _, tc := range typeCases {
		wants[tc.name] = runDig(t, "dig", append(append(at(t, lab.Backend), "+bufsize=1232"), tc.args...)...)
	}
	for _, mode := range []struct {
		name  string
		args  []string
		types []typeCase
	}{
		{"all types", labArgs(lab, lab.Go), typeCases},
		{"optimistic data", append(labArgs(lab, lab.Go), "--optimistic-data"), some},
		{"resolver by name", labArgs(lab, byName), some},
	} {
		t.Run(mode.name, func(t *testing.T) {
			streams := watchStreams(t, tor)
			p := startProxyBin(t, append(mode.args, torArgs(tor)...)...)
			waitAnswer(t, p, "www.lab.test")
			for _, tc := range mode.types {
				want := wants[tc.name]
				for _, transport := range []string{"+notcp", "+tcp"} {
					got := runDig(t, "dig", append(append(at(t, p.Addr), transport), tc.args...)...)
					if got.Status != want.Status || !slices.Equal(got.Answer, want.Answer) {
						t.Errorf("%s %s: got %s %v, want %s %v\n%s", tc.name, transport,
							got.Status, got.Answer, want.Status, want.Answer, got.Out)
					}
				}
			}
			// SERVFAIL before the certificate came through Tor is
			// expected; nothing may fail after it.
			for _, line := range strings.Split(p.output(), "\n") {
				if strings.Contains(line, "Unable to get an answer") && !strings.Contains(line, "no usable certificate yet") {
					t.Errorf("a query failed: %s", line)
				}
			}
			// Every stream of the proxy asked Tor for the resolver as
			// named; by name, the exit resolved it (REMAP from the exit).
			target := strings.TrimPrefix(mode.args[0], "--resolver-address=")
			min := 1 + len(mode.types)*2 // the certificate, one per query
			var events []tortest.StreamEvent
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				events = streams.all()
				n := 0
				for _, e := range events {
					if e.Status == "SUCCEEDED" {
						n++
					}
				}
				if n >= min || time.Now().After(deadline) {
					break
				}
			}
			first := map[string]tortest.StreamEvent{} // by stream ID
			remapped := map[string]bool{}
			succeeded := 0
			for _, e := range events {
				if e.SOCKSUser == "" { // not the proxy's
					continue
				}
				if _, seen := first[e.ID]; !seen {
					first[e.ID] = e
					if got, _ := e.SplitExit(); got != target {
						t.Errorf("the proxy asked Tor for %s, want %s: %s", got, target, e.Raw)
					}
				}
				if e.Status == "REMAP" && e.Args["SOURCE"] == "EXIT" && e.Target == lab.Go {
					remapped[e.ID] = true
				}
				if e.Status == "SUCCEEDED" {
					succeeded++
					if target == byName && !remapped[e.ID] {
						t.Errorf("stream %s succeeded without the exit resolving %s to %s", e.ID, byName, lab.Go)
					}
				}
			}
			if succeeded < min {
				t.Errorf("%d streams to %s succeeded, want at least %d (the certificate, one per query)", succeeded, target, min)
			}
		})
	}
}

// TestTorLargeAnswers: through Tor with the default options, the ~3.5 KB
// and ~13 KB answers arrive whole over TCP, a UDP client with EDNS 4096
// gets the big one whole, and clients whose limit is smaller get it
// truncated, with TC. The Go server asks its backend over UDP with the
// query's own OPT: the proxy advertises what the client can take over its
// TCP upstream (65535 for a TCP client), so nothing is cut on the way.
func TestTorLargeAnswers(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	p := startProxyBin(t, append(labArgs(lab, lab.Go), torArgs(tor)...)...)
	waitAnswer(t, p, "www.lab.test")
	for _, tc := range []struct {
		name      string
		args      []string
		truncated bool
		records   int
	}{
		{"big, no EDNS, UDP", []string{"+noedns", "+ignore", "big.lab.test", "TXT"}, true, 0},
		{"big, EDNS 1232, UDP", []string{"+bufsize=1232", "+ignore", "big.lab.test", "TXT"}, true, 0},
		{"big, EDNS 4096, UDP", []string{"+bufsize=4096", "+ignore", "big.lab.test", "TXT"}, false, 13},
		{"big, TCP", []string{"+tcp", "big.lab.test", "TXT"}, false, 13},
		{"big, DNSSEC, TCP", []string{"+tcp", "+dnssec", "big.lab.test", "TXT"}, false, 14},
		{"huge, TCP, no EDNS", []string{"+tcp", "+noedns", "huge.lab.test", "TXT"}, false, 50},
		{"huge, TCP", []string{"+tcp", "huge.lab.test", "TXT"}, false, 50},
	} {
		got := runDig(t, "dig", append(at(t, p.Addr), tc.args...)...)
		if got.Status != "NOERROR" || got.flag("tc") != tc.truncated || (!tc.truncated && len(got.Answer) != tc.records) {
			t.Errorf("%s: status %s flags %v, %d records\n%s", tc.name, got.Status, got.Flags, len(got.Answer), got.Out)
		}
	}
}

// TestTorTCPOnly: the 1.x --tcp-only bounce works through Tor.
func TestTorTCPOnly(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	p := startProxyBin(t, append(append(labArgs(lab, lab.Go), torArgs(tor)...), "--tcp-only")...)
	waitAnswer(t, p, "www.lab.test")
	got := runDig(t, "dig", append(at(t, p.Addr), "+ignore", "lab.test", "MX")...)
	if !got.flag("tc") || len(got.Answer) != 0 {
		t.Fatalf("UDP under --tcp-only: %v\n%s", got.Flags, got.Out)
	}
	got = runDig(t, "dig", append(at(t, p.Addr), "lab.test", "MX")...)
	if got.flag("tc") || len(got.Answer) != 2 {
		t.Fatalf("dig's TCP retry through Tor: %v %v\n%s", got.Flags, got.Answer, got.Out)
	}
}

// TestTorUnbound: unbound in front validates DNSSEC through the whole
// chain, proxy and Tor included.
func TestTorUnbound(t *testing.T) {
	lab := sharedLab(t)
	tor := sharedTor(t)
	p := startProxyBin(t, append(labArgs(lab, lab.Go), torArgs(tor)...)...)
	waitAnswer(t, p, "www.lab.test")
	ub := startUnbound(t, lab.TrustAnchorDS, p.Addr, "tcp-upstream: yes")
	for _, q := range [][]string{{"www.lab.test", "A"}, {"_sip._tcp.lab.test", "SRV"}, {"nosuch.lab.test", "A"}} {
		r := runDig(t, "dig", append(at(t, ub), append([]string{"+dnssec"}, q...)...)...)
		if !r.flag("ad") {
			t.Fatalf("%v through unbound and Tor: %s %v (want AD)\n%s", q, r.Status, r.Flags, r.Out)
		}
	}
}
