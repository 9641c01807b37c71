package names

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// TestAgainstUnbound asks the real unbound, with its built-in local zones,
// and Local the same queries and compares the answers field by field. The
// zones compared are those unbound serves by default (RFC 6303, RFC 7686,
// RFC 8375, localhost); the others of localZones answer the same way by
// construction (TestLocalZones).
//
// Known differences, which the comparison allows for: unbound writes the
// owner of a SOA in the authority section as configured (lower case), Local
// points it into the question (the client's case); unbound's localhost is a
// redirect zone, which answers SOA and NS queries for a name under localhost
// with records owned by that name, where Local answers NODATA; unbound
// answers a query of class ANY with SERVFAIL, Local with REFUSED.
func TestAgainstUnbound(t *testing.T) {
	addr := startUnbound(t)
	p := mustPolicy(t, Config{})
	loop6, zero6 := ptrName(t, "::1"), ptrName(t, "::")
	var cases []q
	for _, name := range []string{
		"abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion.", "onion.", "WWW.Example.ONION.",
		"localhost.", "foo.localhost.", "nas.home.arpa.", "home.arpa.", "x.invalid.",
		"1.1.168.192.in-addr.arpa.", "4.3.2.10.in-addr.arpa.", "1.0.16.172.in-addr.arpa.", "1.0.31.172.in-addr.arpa.",
		"1.0.64.100.in-addr.arpa.", "1.0.127.100.in-addr.arpa.", "254.169.254.169.in-addr.arpa.", "0.0.0.0.in-addr.arpa.",
		"1.2.0.192.in-addr.arpa.", "1.100.51.198.in-addr.arpa.", "1.113.0.203.in-addr.arpa.", "255.255.255.255.in-addr.arpa.",
		"1.0.0.127.in-addr.arpa.", "2.0.0.127.in-addr.arpa.", "127.in-addr.arpa.", "10.in-addr.arpa.",
		loop6, "x." + loop6, zero6, ptrName(t, "fd12::1"), ptrName(t, "fe80::1"), ptrName(t, "febf::1"),
		ptrName(t, "2001:db8::1"), "d.f.ip6.arpa.",
	} {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypeANY} {
			if strings.HasSuffix(name, ".localhost.") && (qtype == dns.TypeSOA || qtype == dns.TypeNS) {
				continue // redirect zone: see the doc comment
			}
			cases = append(cases, q{name: name, qtype: qtype, rd: true})
		}
	}
	cases = append(cases,
		q{name: "x.onion.", qtype: dns.TypeA, edns: true, size: 4096, do: true, cd: true},
		q{name: "localhost.", qtype: dns.TypeAAAA, edns: true, size: 1232},
		q{name: "x.onion.", qtype: dns.TypeA, edns: true, size: 1232, ver: 1},
		q{name: "x.onion.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS, rd: true},
		q{name: "onion.", qtype: dns.TypeAXFR, rd: true, cd: true},
		q{name: "10.in-addr.arpa.", qtype: dns.TypeIXFR},
	)
	for _, c := range cases {
		pkt := c.pack(t)
		ours, _, ok := p.Local(nil, pkt, 1252)
		if !ok {
			t.Errorf("%s %s: not answered locally", c.name, dns.TypeToString[c.qtype])
			continue
		}
		theirs := exchange(t, addr, pkt)
		if diff := compareAnswers(unpack(t, ours), unpack(t, theirs)); diff != "" {
			t.Errorf("%s %s (EDNS %v DO %v CD %v): %s\nours:\n%v\nunbound's:\n%v", c.name, dns.TypeToString[c.qtype],
				c.edns, c.do, c.cd, diff, unpack(t, ours), unpack(t, theirs))
		}
	}
}

// compareAnswers returns what differs between a and b, "" if nothing.
func compareAnswers(a, b *dns.Msg) string {
	var diffs []string
	if a.MsgHdr != b.MsgHdr {
		diffs = append(diffs, fmt.Sprintf("header %+v, unbound's %+v", a.MsgHdr, b.MsgHdr))
	}
	if !slices.Equal(a.Question, b.Question) {
		diffs = append(diffs, "question")
	}
	for _, s := range []struct {
		name string
		a, b []dns.RR
	}{{"answer", a.Answer, b.Answer}, {"authority", a.Ns, b.Ns}, {"additional", a.Extra, b.Extra}} {
		if x, y := canonicalRRs(s.a), canonicalRRs(s.b); !slices.Equal(x, y) {
			diffs = append(diffs, fmt.Sprintf("%s section %q, unbound's %q", s.name, x, y))
		}
	}
	return strings.Join(diffs, "; ")
}

// canonicalRRs returns the records in presentation form, owner names in
// lower case, sorted (unbound orders an ANY answer its own way).
func canonicalRRs(rrs []dns.RR) []string {
	var out []string
	for _, r := range rrs {
		r = dns.Copy(r)
		r.Header().Name = dns.CanonicalName(r.Header().Name)
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// exchange sends pkt to the server at addr over UDP and returns its answer.
func exchange(t *testing.T, addr string, pkt []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 65535)
	for range 5 {
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return buf[:n]
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatal(err)
		}
	}
	t.Fatalf("no answer from %s", addr)
	return nil
}

// startUnbound runs unbound on a free loopback port with its default local
// zones, no validator and the same EDNS size as the tests give Local, and
// returns its address once it answers.
func startUnbound(t *testing.T) string {
	t.Helper()
	_, err := exec.LookPath("unbound")
	labtest.Require(t, "unbound", err)
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		port := freeUDPPort(t)
		conf := fmt.Sprintf(`server:
  interface: 127.0.0.1@%[1]d
  port: %[1]d
  do-ip6: no
  do-tcp: no
  username: ""
  chroot: ""
  directory: "%[2]s"
  pidfile: "%[2]s/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  do-daemonize: no
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  edns-buffer-size: 1252
`, port, dir)
		path := filepath.Join(dir, "unbound.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(dir, fmt.Sprintf("unbound-%d.log", attempt))
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		defer logFile.Close()
		log := func() string { b, _ := os.ReadFile(logPath); return string(b) }
		cmd := exec.Command("unbound", "-d", "-c", path)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			<-exited
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if up(addr, exited) {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("unbound log:\n%s", log())
				}
			})
			return addr
		}
		stop()
		if attempt == 2 {
			t.Fatalf("unbound did not come up:\n%s", log())
		}
		t.Logf("unbound did not come up on port %d, trying another:\n%s", port, log())
	}
}

// up polls the server at addr with a query for localhost until it answers,
// it exits or 20 seconds pass.
func up(addr string, exited <-chan error) bool {
	m := new(dns.Msg)
	m.SetQuestion("localhost.", dns.TypeA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if r, _, err := c.Exchange(m, addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return true
		}
	}
	return false
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}
