package tests

// End-to-end tests of the command line for several resolvers: the
// dnscrypt-proxy binary against the lab's DNSCrypt resolvers (dnsdist's
// es 1 and es 2 binds, the ameshkov/dnscrypt server).

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// labNames are names of the lab's zone with an A record.
var labNames = []string{"www.lab.test", "lab.test", "alias.lab.test", "x.wild.lab.test", "mail.lab.test"}

// queryLab asks the proxy n questions of the lab's zone, over UDP and TCP
// in turn, and requires an answer to each.
func queryLab(t *testing.T, p *proxyProc, n int) {
	t.Helper()
	for i := range n {
		network := []string{"udp", "tcp"}[i%2]
		name := labNames[i%len(labNames)]
		r, err := query(network, p.Addr, name)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			t.Fatalf("query %d, %s %s: %v %v", i, network, name, r, err)
		}
	}
}

// statusLine is one resolver's line of the status SIGUSR1 logs.
type statusLine struct {
	state, operator string
	queries         int
}

var resolverStatusRE = regexp.MustCompile(`\[INFO\] Resolver (\S+) state=(\S+) queries=(\d+) failures=\d+ median_rtt=\S+ operator=(\S+)`)

// usr1Status sends SIGUSR1 and returns the status line of each resolver,
// by name. The status comes before the certificate checks SIGUSR1 asks
// for: once each DNSCrypt resolver has logged "Refetching server
// certificates" (dnscrypts of them), the lines are all there.
func usr1Status(t *testing.T, p *proxyProc, dnscrypts int) map[string]statusLine {
	t.Helper()
	const refetch = "Refetching server certificates"
	before := p.output()
	p.signal(syscall.SIGUSR1)
	deadline := time.Now().Add(20 * time.Second)
	var out string
	for {
		out = strings.TrimPrefix(p.output(), before)
		if strings.Count(out, refetch) >= dnscrypts {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("no %d %q lines after SIGUSR1:\n%s", dnscrypts, refetch, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := map[string]statusLine{}
	for _, m := range resolverStatusRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[3])
		st[m[1]] = statusLine{state: m[2], queries: n, operator: m[4]}
	}
	return st
}

// TestCLIResolverSet: three stamps make a set; every query is answered,
// the queries are spread over the resolvers (directly: the fastest ones,
// with exploration), the start says which resolvers and how, and SIGUSR1
// logs a status line per resolver.
func TestCLIResolverSet(t *testing.T) {
	lab := sharedLab(t)
	p := startProxyBin(t, "--stamp="+lab.StampXSalsa, "--stamp", lab.StampXChaCha, "--stamp="+lab.StampGo)
	want := fmt.Sprintf("[INFO] Using 3 resolvers (%s, %s, %s): fastest selection, hedging to another resolver", lab.XSalsa, lab.XChaCha, lab.Go)
	if out := p.output(); !strings.Contains(out, want) || !strings.Contains(out, "to 3 resolvers ("+lab.XSalsa) {
		t.Errorf("no %q, or no set in the Proxying line:\n%s", want, out)
	}
	const n = 60
	queryLab(t, p, n)
	st := usr1Status(t, p, 3)
	if !strings.Contains(p.output(), "[INFO] Resolvers: 3 (fastest selection)") {
		t.Errorf("no status header after SIGUSR1:\n%s", p.output())
	}
	total, used := 0, 0
	for _, addr := range []string{lab.XSalsa, lab.XChaCha, lab.Go} {
		s, ok := st[addr]
		if !ok || s.state != "up" || s.operator != "lab.test" {
			t.Errorf("status of %s: %+v (found %v), want up, operator lab.test", addr, s, ok)
		}
		total += s.queries
		if s.queries > 0 {
			used++
		}
	}
	// Each answered query was asked of one resolver at least (a hedge
	// asks a second).
	if total < n || used < 2 {
		t.Errorf("status %+v: %d queries on %d resolvers, want at least %d on 2 or more", st, total, used, n)
	}
}

// TestCLIResolverSetSurvivesADeadResolver: a set with a resolver that
// never answers still answers every query, from the others.
func TestCLIResolverSetSurvivesADeadResolver(t *testing.T) {
	lab := sharedLab(t)
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there
	st, err := stamps.NewDNSCrypt(dead, lab.ProviderName, lab.ProviderKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxyBin(t, "--stamp="+lab.StampXSalsa, "--stamp="+stamps.Format(st), "--stamp="+lab.StampGo, "--timeout=5s")
	queryLab(t, p, 30)
	status := usr1Status(t, p, 3)
	if status[lab.XSalsa].queries+status[lab.Go].queries < 30 {
		t.Errorf("status %+v: fewer than 30 queries on the live resolvers", status)
	}
	// Never ready (no certificate), so never asked.
	if s := status[dead]; s.state != "starting" || s.queries != 0 {
		t.Errorf("status of the dead resolver: %+v, want starting, no query", s)
	}
}

// labListCSV is a resolvers list of the lab's resolvers: es1 and es2 with
// URLs of two operators, go without one (its operator: the provider
// name's domain), and a resolver that says it logs.
func labListCSV(lab *labtest.Lab) string {
	row := func(name, url, noLogs, addr string) string {
		return fmt.Sprintf("%s,%s,yes,%s,%s,%s,%s\n", name, url, noLogs, addr, lab.ProviderName, lab.ProviderKeyColon)
	}
	return "Name,URL,DNSSEC validation,No logs,Resolver address,Provider name,Provider public key\n" +
		row("es1", "https://alpha.example/", "yes", lab.XSalsa) +
		row("es2", "https://www.beta.example/dnscrypt", "yes", lab.XChaCha) +
		row("go", "", "yes", lab.Go) +
		row("logger", "", "no", lab.Mixed)
}

// TestCLIResolverSetFromList: -R NAME1,NAME2,NAME3 from -L; the status
// shows each resolver's operator from the list's URL column.
func TestCLIResolverSetFromList(t *testing.T) {
	lab := sharedLab(t)
	list := filepath.Join(t.TempDir(), "lab.csv")
	if err := os.WriteFile(list, []byte(labListCSV(lab)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxyBin(t, "-R", "es1,es2,go", "-L", list)
	out := p.output()
	for _, line := range []string{
		"[INFO] Using 3 resolvers (es1, es2, go): fastest selection, hedging to another resolver",
		"[INFO] + [es1]: DNS Security Extensions are supported",
		"[INFO] + [go]: Provider supposedly doesn't keep logs",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("no %q in:\n%s", line, out)
		}
	}
	queryLab(t, p, 20)
	st := usr1Status(t, p, 3)
	for name, op := range map[string]string{"es1": "alpha.example", "es2": "beta.example", "go": "lab.test"} {
		if st[name].operator != op {
			t.Errorf("operator of %s: got %q, want %q (status %+v)", name, st[name].operator, op, st)
		}
	}
}

// TestCLIRandomResolvers: -R random:2 of a list with two candidates (the
// third logs) takes both; random:3 is an error that says why.
func TestCLIRandomResolvers(t *testing.T) {
	lab := sharedLab(t)
	list := filepath.Join(t.TempDir(), "lab.csv")
	csv := strings.ReplaceAll(labListCSV(lab), "\ngo,,yes,", "\ngo,,no,") // go logs too
	if err := os.WriteFile(list, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxyBin(t, "-R", "random:2", "-L", list)
	out := p.output()
	if !strings.Contains(out, "[INFO] Randomly chosen resolvers: [es1], [es2]") && !strings.Contains(out, "[INFO] Randomly chosen resolvers: [es2], [es1]") {
		t.Errorf("random:2 of es1 and es2:\n%s", out)
	}
	queryLab(t, p, 10)

	code, _, stderr, _ := runCLI(t, 30*time.Second, "-R", "random:3", "-L", list, "-a", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	if want := "Too few suitable candidates for a random selection of 3 in the [" + list + "] list: 2"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("random:3: got exit %d %q, want 1 and %q", code, stderr, want)
	}
}

// TestCLIResolverSetConfigFile: Stamp repeated in a configuration file,
// with Selection and Hedge; the command line's --stamp replaces the
// file's stamps, all of them.
func TestCLIResolverSetConfigFile(t *testing.T) {
	lab := sharedLab(t)
	conf := filepath.Join(t.TempDir(), "set.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("Stamp %s\nStamp %s\nSelection rotate\nHedge no\nLocalAddress 127.0.0.1:%d\n",
		lab.StampXSalsa, lab.StampXChaCha, freePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		args  []string
		using string
	}{
		{"the file", []string{conf}, fmt.Sprintf("Using 2 resolvers (%s, %s): rotate selection, no hedging", lab.XSalsa, lab.XChaCha)},
		{"the command line's stamps", []string{conf, "--stamp=" + lab.StampMixed, "--stamp=" + lab.StampGo},
			fmt.Sprintf("Using 2 resolvers (%s, %s): rotate selection, no hedging", lab.Mixed, lab.Go)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := launchProxy(t, nil, tt.args...)
			waitLog(t, p, "Proxying from", 20*time.Second)
			p.Addr = regexp.MustCompile(`Proxying from (\S+)`).FindStringSubmatch(p.output())[1]
			if out := p.output(); !strings.Contains(out, tt.using) {
				t.Errorf("no %q in:\n%s", tt.using, out)
			}
			queryLab(t, p, 10)
			if code := p.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
}

// TestCLIOneResolverAsBefore: a 1.x command line gets one resolver, used
// as before: no set line at start, and SIGUSR1 only re-checks the
// certificate.
func TestCLIOneResolverAsBefore(t *testing.T) {
	lab := sharedLab(t)
	p := startProxyBin(t, labArgs(lab, lab.XChaCha)...)
	if out := p.output(); regexp.MustCompile(`Using \d+ resolver`).MatchString(out) || !strings.Contains(out, "to "+lab.XChaCha+"\n") {
		t.Errorf("start of a 1.x command line:\n%s", out)
	}
	queryLab(t, p, 6)
	if st := usr1Status(t, p, 1); len(st) != 0 || strings.Contains(p.output(), "Resolvers:") {
		t.Errorf("status lines with one resolver: %+v\n%s", st, p.output())
	}
	queryLab(t, p, 2)
}

// TestCLIResolverSetErrors: the command line's mistakes about several
// resolvers end the program at once, saying why.
func TestCLIResolverSetErrors(t *testing.T) {
	lab := sharedLab(t)
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{append([]string{"-r", lab.XSalsa}, labArgs(lab, lab.XChaCha)...), "[ERROR] --resolver-address is given twice with a plain address"},
		{[]string{"--stamp=" + lab.StampGo, "--stamp=" + lab.StampGo}, "[ERROR] Resolver " + lab.Go + " is given twice (--stamp and --stamp)"},
		{[]string{"-R", "a", "-R", "b"}, "[ERROR] --resolver-name is given 2 times"},
		{[]string{"--selection=rotate", "--stamp=" + lab.StampGo}, "[ERROR] --selection needs several resolvers"},
		{[]string{"--selection=round-robin"}, "Invalid selection: [round-robin] (want rotate or fastest)"},
	} {
		code, _, stderr, _ := runCLI(t, 30*time.Second, tt.args...)
		if code != 1 || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%q: got exit %d %q, want 1 and %q", tt.args, code, stderr, tt.msg)
		}
	}
}

// TestCLITestModeSeveral: --test with several resolvers tests each
// DNSCrypt one and exits with the worst status.
func TestCLITestModeSeveral(t *testing.T) {
	now := time.Now()
	good := dnscrypttest.NewServer(t, nil)
	good2 := dnscrypttest.NewServer(t, nil)
	ending := dnscrypttest.NewServer(t, nil, dnscrypttest.CertSpec{NotAfter: now.Add(30 * time.Minute)})
	expired := dnscrypttest.NewServer(t, nil, dnscrypttest.CertSpec{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	st, err := stamps.NewDNSCrypt("127.0.0.1:"+strconv.Itoa(freePort(t)), dnscrypttest.ProviderName, good.ProviderKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	dead := stamps.Format(st)
	for _, tt := range []struct {
		name    string
		stamps  []string
		extra   []string
		code    int
		summary string
	}{
		{"all valid", []string{good.Stamp(), good2.Stamp()}, nil, 0, "[INFO] Certificates of 2 resolvers tested"},
		{"one ends within the margin", []string{good.Stamp(), ending.Stamp()}, nil, 4, ": not valid for the margin): exit status 4"},
		{"one expired, one silent", []string{dead, expired.Stamp(), ending.Stamp()}, nil, 2, "no answer; 127.0.0.1:"},
		{"one silent", []string{good.Stamp(), dead}, nil, 3, "[WARNING] Certificates of 2 resolvers tested"},
		{"a DoT resolver is not tested", []string{good.Stamp()}, []string{"-r", "tls://127.0.0.1:1"}, 0,
			"[INFO] Not testing tls://127.0.0.1:1: a tls resolver has no DNSCrypt certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--test=60"}
			for _, s := range tt.stamps {
				args = append(args, "--stamp="+s)
			}
			code, stdout, stderr, _ := runCLI(t, 90*time.Second, append(args, tt.extra...)...)
			out := stdout + stderr
			if code != tt.code || !strings.Contains(out, tt.summary) || strings.Count(out, "[NOTICE] Testing the certificates of") != len(tt.stamps) {
				t.Errorf("got exit %d\n%s\nwant exit %d and %q", code, out, tt.code, tt.summary)
			}
		})
	}
	code, stdout, stderr, _ := runCLI(t, 30*time.Second, "--test=0", "-r", "tls://127.0.0.1:1", "-r", "tcp://127.0.0.1:1")
	if want := "[ERROR] --test checks DNSCrypt resolvers' certificates: none of the 2 resolvers is one"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("--test without DNSCrypt resolvers: got exit %d %q, want 1 and %q", code, stderr, want)
	}
	if out := stdout + stderr; strings.Contains(out, "key pair") || strings.Contains(out, "seed") {
		t.Errorf("without DNSCrypt resolvers, the log speaks of DNSCrypt client keys:\n%s", out)
	}
	if n := slices.IndexFunc([]*dnscrypttest.Server{good, good2, ending, expired}, func(s *dnscrypttest.Server) bool { return len(s.Queries()) > 0 }); n >= 0 {
		t.Errorf("--test sent DNS queries to resolver %d", n)
	}
}
