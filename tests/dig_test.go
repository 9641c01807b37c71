package tests

import (
	"bufio"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// digResult is what dig or kdig printed, parsed.
type digResult struct {
	Status string   // NOERROR, NXDOMAIN, ...
	Flags  []string // qr rd ra ad tc ...
	Answer []string // answer records, TTL set to 0, sorted
	Out    string
}

func (r *digResult) flag(f string) bool { return slices.Contains(r.Flags, f) }

var (
	statusRE = regexp.MustCompile(`status: ([A-Z]+)`)
	flagsRE  = regexp.MustCompile(`;; [Ff]lags: ([a-z ]*)[;]`)
)

// runDig runs dig (or kdig) with args and parses its output. A timeout or
// error without output gives a result with an empty Status.
func runDig(t testing.TB, tool string, args ...string) *digResult {
	t.Helper()
	return runDigCmd(t, nil, tool, args...)
}

// runDigCmd is runDig with a command prefix (namespace, user).
func runDigCmd(t testing.TB, prefix []string, tool string, args ...string) *digResult {
	t.Helper()
	base := []string{"+time=5", "+tries=1"}
	if tool == "kdig" {
		base = []string{"+time=5", "+retry=0"}
	}
	argv := append(append(append(append([]string(nil), prefix...), tool), base...), args...)
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	r := &digResult{Out: string(out)}
	if m := statusRE.FindStringSubmatch(r.Out); m != nil {
		r.Status = m[1]
	}
	if m := flagsRE.FindStringSubmatch(r.Out); m != nil {
		r.Flags = strings.Fields(m[1])
	}
	inAnswer := false
	sc := bufio.NewScanner(strings.NewReader(r.Out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION"):
			inAnswer = true
		case strings.HasPrefix(line, ";;") || strings.TrimSpace(line) == "":
			if inAnswer && !strings.HasPrefix(line, ";; ANSWER") {
				inAnswer = false
			}
		case inAnswer:
			rr, err := dns.NewRR(line)
			if err != nil || rr == nil {
				t.Fatalf("%s printed an answer record that does not parse: %q: %v", tool, line, err)
			}
			rr.Header().Ttl = 0
			r.Answer = append(r.Answer, rr.String())
		}
	}
	slices.Sort(r.Answer)
	return r
}

// at returns the dig arguments for a server "IP:PORT" or "[IPv6]:PORT".
func at(t testing.TB, addr string) []string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("dig server address: %v", err)
	}
	return []string{"@" + host, "-p", port}
}
