package labtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jedisct1/go-dnsstamps"
	"github.com/miekg/dns"
	"golang.org/x/net/proxy"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

// query sends one question to addr over network ("udp" or "tcp").
func query(t *testing.T, network, addr, name string, qtype uint16, do bool) *dns.Msg {
	t.Helper()
	r, err := tryQuery(network, addr, name, qtype, do)
	if err != nil {
		t.Fatalf("%s %s %s to %s: %v", network, name, dns.TypeToString[qtype], addr, err)
	}
	return r
}

func tryQuery(network, addr, name string, qtype uint16, do bool) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if do {
		m.SetEdns0(4096, true)
	}
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func firstA(r *dns.Msg) string {
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

func txts(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out
}

func TestLab(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	lab := StartTB(t, Options{})
	t.Logf("Start (everything, DNSSEC, Go server) took %v", time.Since(begin))

	t.Run("fields", func(t *testing.T) {
		if lab.ProviderName != ProviderName {
			t.Errorf("ProviderName: got %q, want %q", lab.ProviderName, ProviderName)
		}
		if got := strings.ToUpper(strings.ReplaceAll(lab.ProviderKeyColon, ":", "")); got != strings.ToUpper(lab.ProviderKeyHex) {
			t.Errorf("ProviderKeyColon %s does not match ProviderKeyHex %s", lab.ProviderKeyColon, lab.ProviderKeyHex)
		}
		if n := strings.Count(lab.ProviderKeyColon, ":"); n != 15 {
			t.Errorf("ProviderKeyColon %s: got %d colons, want 15", lab.ProviderKeyColon, n)
		}
		if now := time.Now(); !lab.CertNotBefore.Before(now) || !lab.CertNotAfter.After(now.Add(23*time.Hour)) {
			t.Errorf("cert validity %v .. %v does not cover now .. now+23h", lab.CertNotBefore, lab.CertNotAfter)
		}
		addrs := map[string]string{}
		for name, a := range map[string]string{"XSalsa": lab.XSalsa, "XChaCha": lab.XChaCha, "Mixed": lab.Mixed, "Go": lab.Go,
			"Backend": lab.Backend, "Plain": lab.Plain, "Socks": lab.Socks, "SocksAuth": lab.SocksAuth, "Console": lab.ConsoleAddr,
			"DoT": lab.DoT, "DoHAddr": lab.DoHAddr, "BackendDoT": lab.BackendDoT, "BackendDoHAddr": lab.BackendDoHAddr} {
			host, _, err := net.SplitHostPort(a)
			if err != nil || host != "127.0.0.1" {
				t.Errorf("%s: got %q, want 127.0.0.1:PORT", name, a)
			}
			if other, dup := addrs[a]; dup {
				t.Errorf("%s and %s share %s", name, other, a)
			}
			addrs[a] = name
		}
		for _, s := range []struct{ stamp, addr string }{
			{lab.StampXSalsa, lab.XSalsa}, {lab.StampXChaCha, lab.XChaCha}, {lab.StampMixed, lab.Mixed}, {lab.StampGo, lab.Go},
		} {
			st, err := dnsstamps.NewServerStampFromString(s.stamp)
			if err != nil {
				t.Errorf("stamp %s: %v", s.stamp, err)
				continue
			}
			if st.Proto != dnsstamps.StampProtoTypeDNSCrypt || st.ServerAddrStr != s.addr || st.ProviderName != ProviderName ||
				string(st.ServerPk) != string(lab.ProviderKey) || st.Props != 7 {
				t.Errorf("stamp %s: got proto %v addr %s name %s pk %x props %d, want DNSCrypt %s %s %x 7",
					s.stamp, st.Proto, st.ServerAddrStr, st.ProviderName, st.ServerPk, st.Props, s.addr, ProviderName, lab.ProviderKey)
			}
		}
		if got := lab.Env["LAB_STAMP"]; got != lab.StampXSalsa {
			t.Errorf("Env[LAB_STAMP]: got %q, want %q", got, lab.StampXSalsa)
		}
	})

	t.Run("backend", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			for _, addr := range []string{lab.Backend, lab.Plain} {
				r := query(t, network, addr, "www.lab.test", dns.TypeA, false)
				if got := firstA(r); got != "127.0.84.10" {
					t.Errorf("%s %s www.lab.test A: got %q, want 127.0.84.10", network, addr, got)
				}
			}
		}
	})

	t.Run("zone", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			qtype   uint16
			rcode   int
			answers int // -1: any
			minLen  int
			maxLen  int
		}{
			{"medium.lab.test", dns.TypeTXT, dns.RcodeSuccess, 4, 1000, 1232},
			{"big.lab.test", dns.TypeTXT, dns.RcodeSuccess, 13, 3300, 3800},
			{"many.lab.test", dns.TypeA, dns.RcodeSuccess, 200, 3000, 3600},
			{"huge.lab.test", dns.TypeTXT, dns.RcodeSuccess, 50, 13000, 14000},
			{"_sip._tcp.lab.test", dns.TypeSRV, dns.RcodeSuccess, 2, 0, 512},
			{"lab.test", dns.TypeMX, dns.RcodeSuccess, 2, 0, 512},
			{"10.84.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, 1, 0, 512},
			{"alias2.lab.test", dns.TypeA, dns.RcodeSuccess, 3, 0, 512},
			{"anything.wild.lab.test", dns.TypeA, dns.RcodeSuccess, 1, 0, 512},
			{"v6only.lab.test", dns.TypeA, dns.RcodeSuccess, 0, 0, 512},
			{"nope.lab.test", dns.TypeA, dns.RcodeNameError, 0, 0, 512},
			{"example.com", dns.TypeA, dns.RcodeRefused, 0, 0, 512},
		} {
			r := query(t, "tcp", lab.Backend, tc.name, tc.qtype, false)
			r.Compress = true // Len is the size on the wire
			if r.Rcode != tc.rcode || len(r.Answer) != tc.answers || r.Len() < tc.minLen || r.Len() > tc.maxLen {
				t.Errorf("%s %s: got rcode %s, %d answers, %d bytes; want %s, %d, %d..%d bytes",
					tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], len(r.Answer), r.Len(),
					dns.RcodeToString[tc.rcode], tc.answers, tc.minLen, tc.maxLen)
			}
		}
		// huge does not fit in 4096 bytes of UDP.
		if r := query(t, "udp", lab.Backend, "huge.lab.test", dns.TypeTXT, true); !r.Truncated {
			t.Errorf("huge over UDP: got TC=0 with %d bytes, want TC=1", r.Len())
		}
	})

	t.Run("internal and public-looking addresses", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			qtype uint16
			want  []string // the answer's records' data, in any order
		}{
			{"pub.lab.test", dns.TypeA, []string{"20.84.0.10"}},
			{"10.0.84.20.in-addr.arpa", dns.TypePTR, []string{"pub.lab.test."}},
			{"pub6.lab.test", dns.TypeAAAA, []string{"2a02:84::10"}},
			{"0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.8.0.0.2.0.a.2.ip6.arpa", dns.TypePTR, []string{"pub6.lab.test."}},
			{"rebind.lab.test", dns.TypeA, []string{"10.1.2.3", "192.168.1.1", "127.0.0.1", "20.84.0.11"}},
			{"rebind6.lab.test", dns.TypeAAAA, []string{"fe80::1", "fd00::1"}},
			{"special.lab.test", dns.TypeA, []string{"0.0.0.0", "100.64.0.1", "169.254.1.1", "172.16.0.1", "20.84.0.12"}},
			{"special6.lab.test", dns.TypeAAAA, []string{"::", "::1", "::ffff:10.0.0.1", "2a02:84::12"}},
			{"pubcname.lab.test", dns.TypeA, []string{"priv.lab.test.", "192.168.84.10"}},
			{"pubcname.lab.test", dns.TypeAAAA, []string{"priv.lab.test.", "fd84::10"}},
		} {
			r := query(t, "udp", lab.Backend, tc.name, tc.qtype, false)
			var got []string
			for _, rr := range r.Answer {
				h := rr.Header()
				got = append(got, strings.TrimPrefix(rr.String(), h.String()))
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if r.Rcode != dns.RcodeSuccess || !slices.Equal(got, want) {
				t.Errorf("%s %s: got %s %v, want %v", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], got, want)
			}
		}
		r := query(t, "tcp", lab.Backend, "pubmany.lab.test", dns.TypeA, false)
		pubmany := netip.MustParsePrefix("20.84.1.0/24")
		seen := map[string]bool{}
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok && pubmany.Contains(netip.MustParseAddr(a.A.String())) {
				seen[a.A.String()] = true
			}
		}
		r.Compress = true
		if len(seen) != 200 || len(r.Answer) != 200 || r.Len() < 3000 || r.Len() > 3600 {
			t.Errorf("pubmany.lab.test A: got %d records, %d in 20.84.1.0/24, %d bytes; want 200, 200, about 3.2 KB",
				len(r.Answer), len(seen), r.Len())
		}
		if r := query(t, "udp", lab.Backend, "pubmany.lab.test", dns.TypeA, false); !r.Truncated {
			t.Errorf("pubmany.lab.test A over UDP without EDNS: got TC=0, want TC=1")
		}
	})

	t.Run("Go server, huge over TCP", func(t *testing.T) {
		// The Go server forwards over UDP with the query's own OPT, and the
		// backend's UDP answers may be as large as that allows: with a large
		// EDNS size, the 13.4 KB answer comes back whole over TCP; with a
		// small one, TC.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := dnscrypttest.NewClient(ctx, &certs.UDPWithTCPFallback{}, lab.Go, lab.ProviderName, lab.ProviderKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			edns      uint16
			do        bool
			truncated bool
			records   int
		}{{65535, false, false, 50}, {65535, true, false, 51}, {14000, false, false, 50}, {1232, false, true, 0}} {
			q := new(dns.Msg)
			q.SetQuestion("huge.lab.test.", dns.TypeTXT)
			q.SetEdns0(tc.edns, tc.do)
			r, err := c.Exchange(ctx, "tcp", q)
			if err != nil {
				t.Fatalf("EDNS %d: %v", tc.edns, err)
			}
			if r.Truncated != tc.truncated || len(r.Answer) != tc.records {
				t.Errorf("EDNS %d DO %v: got TC=%v, %d records; want TC=%v, %d", tc.edns, tc.do, r.Truncated, len(r.Answer), tc.truncated, tc.records)
			}
		}
	})

	t.Run("dnssec", func(t *testing.T) {
		b, err := os.ReadFile(lab.TrustAnchorDS)
		if err != nil {
			t.Fatal(err)
		}
		rr, err := dns.NewRR(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("trust anchor %q: %v", b, err)
		}
		ds, ok := rr.(*dns.DS)
		if !ok {
			t.Fatalf("trust anchor: got %T, want *dns.DS", rr)
		}
		keys := query(t, "tcp", lab.Backend, "lab.test", dns.TypeDNSKEY, true)
		var ksk, zsk *dns.DNSKEY
		for _, rr := range keys.Answer {
			if k, ok := rr.(*dns.DNSKEY); ok {
				if k.Flags&dns.SEP != 0 {
					ksk = k
				} else {
					zsk = k
				}
			}
		}
		if ksk == nil || zsk == nil {
			t.Fatalf("DNSKEY lab.test: got %v, want a KSK and a ZSK", keys.Answer)
		}
		if got := ksk.ToDS(ds.DigestType); got == nil || !strings.EqualFold(got.Digest, ds.Digest) || got.KeyTag != ds.KeyTag {
			t.Errorf("KSK's DS: got %v, want the trust anchor %v", got, ds)
		}
		r := query(t, "tcp", lab.Backend, "www.lab.test", dns.TypeA, true)
		var rrset []dns.RR
		var sig *dns.RRSIG
		for _, rr := range r.Answer {
			if s, ok := rr.(*dns.RRSIG); ok {
				sig = s
			} else {
				rrset = append(rrset, rr)
			}
		}
		if sig == nil {
			t.Fatalf("www.lab.test A with DO: no RRSIG in %v", r.Answer)
		}
		if err := sig.Verify(zsk, rrset); err != nil || !sig.ValidityPeriod(time.Now()) {
			t.Errorf("RRSIG of www.lab.test A: verify: %v, valid now: %v", err, sig.ValidityPeriod(time.Now()))
		}
	})

	t.Run("cert", func(t *testing.T) {
		for _, tc := range []struct {
			name, network, addr string
			certs               int
		}{
			{"XSalsa", "udp", lab.XSalsa, 1},
			{"XChaCha", "udp", lab.XChaCha, 1},
			{"Mixed", "udp", lab.Mixed, 2},
			{"Go over UDP", "udp", lab.Go, 1},
			{"Go over TCP", "tcp", lab.Go, 1},
		} {
			r := query(t, tc.network, tc.addr, ProviderName, dns.TypeTXT, false)
			got := txts(r)
			if len(got) != tc.certs {
				t.Errorf("%s: got %d TXT records, want %d", tc.name, len(got), tc.certs)
			}
			for _, s := range got {
				if !strings.HasPrefix(s, "DNSC") {
					t.Errorf("%s: got TXT %.20q..., want it to start with DNSC", tc.name, s)
				}
			}
		}
	})

	t.Run("socks", func(t *testing.T) {
		for _, tc := range []struct {
			name, addr string
			auth       *proxy.Auth
			ok         bool
		}{
			{"no auth", lab.Socks, nil, true},
			{"auth", lab.SocksAuth, &proxy.Auth{User: lab.SocksUser, Password: lab.SocksPass}, true},
			{"wrong password", lab.SocksAuth, &proxy.Auth{User: lab.SocksUser, Password: "wrong"}, false},
			{"auth missing", lab.SocksAuth, nil, false},
		} {
			err := socksQuery(tc.addr, tc.auth, lab.Backend)
			if (err == nil) != tc.ok {
				t.Errorf("%s: got error %v, want success %v", tc.name, err, tc.ok)
			}
		}
	})

	t.Run("console", func(t *testing.T) {
		out, err := lab.Console("labCerts()")
		if err != nil || !strings.Contains(out, "bind=2 serial=2 es=2 active=true") {
			t.Errorf("labCerts(): got %q, %v; want a line for bind=2 serial=2", out, err)
		}
		if out, err := lab.Console("noSuchFunction()"); err == nil {
			t.Errorf("noSuchFunction(): got %q and no error, want an error", out)
		}
	})

	t.Run("rotate", func(t *testing.T) {
		if _, err := lab.Rotate("-b", "7"); err == nil {
			t.Errorf("Rotate -b 7: got no error")
		}
		out, err := lab.Rotate("-b", strconv.Itoa(lab.BindOf(lab.XSalsa)))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "bind=0 serial=1 es=1 active=true") || !strings.Contains(out, "bind=0 serial=2 es=1 active=true") {
			t.Errorf("after Rotate -b 0: got\n%s\nwant bind 0 with serials 1 and 2", out)
		}
		if got := len(txts(query(t, "udp", lab.XSalsa, ProviderName, dns.TypeTXT, false))); got != 2 {
			t.Errorf("certs on XSalsa after Rotate: got %d, want 2", got)
		}
		if got := len(txts(query(t, "udp", lab.XChaCha, ProviderName, dns.TypeTXT, false))); got != 1 {
			t.Errorf("certs on XChaCha after rotating bind 0: got %d, want 1", got)
		}
	})
}

// socksQuery asks www.lab.test A of backend through the SOCKS5 server at addr.
func socksQuery(addr string, auth *proxy.Auth, backend string) error {
	d, err := proxy.SOCKS5("tcp", addr, auth, &net.Dialer{Timeout: 3 * time.Second})
	if err != nil {
		return err
	}
	c, err := d.Dial("tcp", backend)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	co := &dns.Conn{Conn: c}
	m := new(dns.Msg)
	m.SetQuestion("www.lab.test.", dns.TypeA)
	if err := co.WriteMsg(m); err != nil {
		return err
	}
	r, err := co.ReadMsg()
	if err != nil {
		return err
	}
	if got := firstA(r); got != "127.0.84.10" {
		return fmt.Errorf("got A %q, want 127.0.84.10", got)
	}
	return nil
}

// TestParallel starts two labs at once and checks that they are separate and
// that Close stops one without touching the other.
func TestParallel(t *testing.T) {
	t.Parallel()
	opts := []Options{{NoGoServer: true}, {NoGoServer: true, NoDNSSEC: true, CertTTL: 2*time.Hour + 300*time.Millisecond}}
	labs := make([]*Lab, len(opts))
	errs := make([]error, len(opts))
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range opts {
		wg.Go(func() { labs[i], errs[i] = Start(opts[i]) })
	}
	wg.Wait()
	t.Logf("two labs at once (no Go server) took %v", time.Since(begin))
	for i, err := range errs {
		if labs[i] != nil {
			t.Cleanup(func() { labs[i].Close() })
		}
		if errors.Is(err, ErrUnavailable) {
			Require(t, "test lab", err)
		}
		if err != nil {
			t.Fatalf("lab %d: %v", i, err)
		}
	}
	a, b := labs[0], labs[1]
	if a.Dir == b.Dir || a.Backend == b.Backend || a.XSalsa == b.XSalsa {
		t.Fatalf("labs share a dir or ports: %s %s %s / %s %s %s", a.Dir, a.Backend, a.XSalsa, b.Dir, b.Backend, b.XSalsa)
	}
	if a.Go != "" || a.StampGo != "" {
		t.Errorf("NoGoServer: got Go %q, StampGo %q, want both empty", a.Go, a.StampGo)
	}
	if b.TrustAnchorDS != "" {
		t.Errorf("NoDNSSEC: got TrustAnchorDS %q, want empty", b.TrustAnchorDS)
	}
	if r := query(t, "tcp", b.Backend, "www.lab.test", dns.TypeA, true); len(r.Answer) != 1 {
		t.Errorf("NoDNSSEC: www.lab.test A with DO: got %v, want just the A record", r.Answer)
	}
	if got, want := b.CertNotAfter.Sub(b.CertNotBefore), 3*time.Hour+time.Second; got != want {
		t.Errorf("CertTTL 2h0m0.3s: got validity %v, want %v (1 h before the start, TTL rounded up)", got, want)
	}

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := a.Console("labCerts()"); !errors.Is(err, ErrClosed) {
		t.Errorf("Console after Close: got %v, want ErrClosed", err)
	}
	if _, err := os.Stat(a.Dir); !os.IsNotExist(err) {
		t.Errorf("state dir after Close: got %v, want it removed", err)
	}
	for _, addr := range []string{a.Backend, a.XSalsa, a.Socks, a.ConsoleAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
	if got := firstA(query(t, "udp", b.Plain, "www.lab.test", dns.TypeA, false)); got != "127.0.84.10" {
		t.Errorf("other lab after Close: got %q, want 127.0.84.10", got)
	}
}

// TestWatchdog checks that a lab stops by itself when its owner process
// exits without calling Close, or when its state dir is removed.
func TestWatchdog(t *testing.T) {
	t.Parallel()
	if err := checkTools(); err != nil {
		Require(t, "test lab", err)
	}
	for _, tc := range []struct {
		name string
		kill func(owner *exec.Cmd, l *Lab)
	}{
		{"owner exits", func(owner *exec.Cmd, _ *Lab) { owner.Process.Kill(); owner.Wait() }},
		{"state dir removed", func(_ *exec.Cmd, l *Lab) { os.RemoveAll(l.Dir) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			owner := exec.Command("sleep", "300")
			if err := owner.Start(); err != nil {
				Require(t, "sleep", err)
			}
			defer func() { owner.Process.Kill(); owner.Wait() }()

			dir := t.TempDir()
			l := &Lab{Dir: dir, root: RepoRoot()}
			defer l.Close()
			ports, err := freePorts(len(portVars))
			if err != nil {
				t.Fatal(err)
			}
			env := []string{"LAB_GO_SERVER=0", "LAB_DNSSEC=0", "LAB_OWNER_PID=" + strconv.Itoa(owner.Process.Pid)}
			if err := l.runStart(env, ports); err != nil {
				t.Fatal(err)
			}
			if err := l.load(); err != nil {
				t.Fatal(err)
			}
			if got := firstA(query(t, "udp", l.Backend, "www.lab.test", dns.TypeA, false)); got != "127.0.84.10" {
				t.Fatalf("backend: got %q, want 127.0.84.10", got)
			}
			procs := recordedProcs(t, dir)
			if len(procs) != 5 { // watchdog, unbound, dnsdist, socks, socks-auth
				t.Fatalf("pid files: got %v, want 5", procs)
			}
			tc.kill(owner, l)
			begin := time.Now()
			for {
				alive := aliveProcs(procs)
				if len(alive) == 0 {
					break
				}
				if time.Since(begin) > 20*time.Second {
					t.Fatalf("lab processes still running 20 s later: %v", alive)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("lab stopped %v later", time.Since(begin))
			for _, addr := range []string{l.Plain, l.XSalsa, l.Socks, l.SocksAuth} {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
					t.Errorf("%s still accepts connections", addr)
				}
			}
		})
	}
}

// recordedProcs returns the "PID STARTTIME" lines of the pid files in dir.
func recordedProcs(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	procs := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		procs[strings.TrimSuffix(filepath.Base(f), ".pid")] = strings.TrimSpace(string(b))
	}
	return procs
}

// aliveProcs returns the names of the processes in procs that still run:
// same start time (field 22 of /proc/PID/stat) and not a zombie.
func aliveProcs(procs map[string]string) []string {
	var alive []string
	for name, rec := range procs {
		pid, start, _ := strings.Cut(rec, " ")
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 19 && f[0] != "Z" && f[19] == start {
			alive = append(alive, name+" "+rec)
		}
	}
	return alive
}

// TestPortClash checks that start.sh refuses a busy port with an error that
// Start retries on, and leaves nothing running.
func TestPortClash(t *testing.T) {
	t.Parallel()
	if err := checkTools(); err != nil {
		Require(t, "test lab", err)
	}
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			ports, err := freePorts(len(portVars))
			if err != nil {
				t.Fatal(err)
			}
			busy := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[7])) // LAB_PORT_BACKEND
			if network == "tcp" {
				ln, err := net.Listen("tcp4", busy)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
			} else {
				pc, err := net.ListenPacket("udp4", busy)
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
			}
			dir := t.TempDir()
			l := &Lab{Dir: dir, root: RepoRoot()}
			err = l.runStart([]string{"LAB_GO_SERVER=0", "LAB_DNSSEC=0"}, ports)
			if !errors.Is(err, errPortClash) {
				t.Fatalf("start with %s %s busy: got %v, want errPortClash", network, busy, err)
			}
			if pids, _ := filepath.Glob(filepath.Join(dir, "pids", "*.pid")); len(pids) > 0 {
				t.Errorf("processes left after the failed start: %v", pids)
			}
		})
	}
}

func TestStartMissingTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	l, err := Start(Options{NoGoServer: true})
	if !errors.Is(err, ErrUnavailable) || l != nil {
		t.Fatalf("Start with an empty PATH: got %v, %v; want ErrUnavailable", l, err)
	}
	if !strings.Contains(err.Error(), "dnsdist") || !strings.Contains(err.Error(), "install.sh") {
		t.Errorf("error %q should name dnsdist and install.sh", err)
	}
	if _, err := Start(Options{CertTTL: -time.Second}); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("negative CertTTL: got %v, want an options error", err)
	}
}

func TestGoServerBinary(t *testing.T) {
	bin, err := GoServerBinary()
	Require(t, "Go DNSCrypt server", err)
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkExecutable(bin); err != nil {
		t.Error(err)
	}
	want, err := goServerStamp(filepath.Join(RepoRoot(), "tests", "tools"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(bin + ".stamp"); err != nil || strings.TrimSpace(string(got)) != want {
		t.Errorf("stamp: got %q, %v; want %s", got, err, want)
	}
	// Current: a second call must not rebuild.
	if bin2, err := GoServerBinary(); err != nil || bin2 != bin {
		t.Fatalf("second call: got %q, %v; want %q", bin2, err, bin)
	}
	if fi2, err := os.Stat(bin); err != nil || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("second call rebuilt the binary (mtime %v, then %v)", fi.ModTime(), fi2.ModTime())
	}

	t.Setenv("LAB_GO_DNSCRYPT", filepath.Join(t.TempDir(), "missing"))
	if _, err := GoServerBinary(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("LAB_GO_DNSCRYPT=missing file: got %v, want ErrUnavailable", err)
	}
	t.Setenv("LAB_GO_DNSCRYPT", bin)
	if got, err := GoServerBinary(); err != nil || got != bin {
		t.Errorf("LAB_GO_DNSCRYPT=%s: got %q, %v", bin, got, err)
	}
}

func TestRepoRoot(t *testing.T) {
	root := RepoRoot()
	if root == "" {
		t.Fatal("RepoRoot: not found")
	}
	for _, f := range []string{"go.mod", "tests/lab/start.sh", "tests/tools/go.mod"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("RepoRoot %s: %v", root, err)
		}
	}
	// tests/tools has a go.mod of another module: the walk goes past it.
	if got := findRoot(filepath.Join(root, "tests", "tools")); got != root {
		t.Errorf("findRoot(tests/tools): got %q, want %q", got, root)
	}
	if got := findRoot(t.TempDir()); got != "" {
		t.Errorf("findRoot(temp dir): got %q, want \"\"", got)
	}
}

func TestModuleOf(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"module github.com/a/b\n\ngo 1.26\n", "github.com/a/b"},
		{"// comment\nmodule \"github.com/a/b\" // x\n", "github.com/a/b"},
		{"modules x\n", ""},
		{"module\n", ""},
		{"", ""},
	} {
		if got := moduleOf([]byte(tc.in)); got != tc.want {
			t.Errorf("moduleOf(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseEnv(t *testing.T) {
	env, err := ParseEnv("lab.env", []byte("# comment\n\nexport A=1\nB=x=y\nexport EMPTY=\n  export C=sdns://AQ_-\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "x=y", "EMPTY": "", "C": "sdns://AQ_-"}
	if len(env) != len(want) {
		t.Errorf("got %v, want %v", env, want)
	}
	for k, v := range want {
		if got, ok := env[k]; !ok || got != v {
			t.Errorf("%s: got %q (%v), want %q", k, got, ok, v)
		}
	}
	for _, bad := range []string{"export\n", "novalue\n", "=x\n", "A B=1\n"} {
		_, err := ParseEnv("f.env", []byte(bad))
		if err == nil || !strings.Contains(err.Error(), "f.env line 1") {
			t.Errorf("ParseEnv(%q): got %v, want an error naming f.env line 1", bad, err)
		}
	}
}

func TestBindOf(t *testing.T) {
	l := &Lab{XSalsa: "127.0.0.1:1", XChaCha: "127.0.0.1:2", Mixed: "127.0.0.1:3", Go: "127.0.0.1:4"}
	for _, tc := range []struct {
		addr string
		want int
	}{{l.XSalsa, 0}, {l.XChaCha, 1}, {l.Mixed, 2}, {l.Go, -1}, {"", -1}, {"127.0.0.1:5", -1}} {
		if got := l.BindOf(tc.addr); got != tc.want {
			t.Errorf("BindOf(%q): got %d, want %d", tc.addr, got, tc.want)
		}
	}
	if got := (&Lab{}).BindOf(""); got != -1 {
		t.Errorf("zero Lab, BindOf(\"\"): got %d, want -1", got)
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := freePorts(9)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || p > 65535 || seen[p] {
			t.Fatalf("got ports %v, want 9 different valid ports", ports)
		}
		seen[p] = true
		ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d: TCP: %v", p, err)
			continue
		}
		ln.Close()
		pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d: UDP: %v", p, err)
			continue
		}
		pc.Close()
	}
}

func TestBoolEnv(t *testing.T) {
	const name = "LABTEST_BOOLENV_TEST"
	for _, tc := range []struct {
		value string
		want  bool
	}{{"1", true}, {"true", true}, {"TRUE", true}, {"0", false}, {"false", false}, {"", false}, {"yes", false}} {
		t.Setenv(name, tc.value)
		if got := BoolEnv(name); got != tc.want {
			t.Errorf("BoolEnv with %s=%q: got %v, want %v", name, tc.value, got, tc.want)
		}
	}
}

func TestWithoutEnv(t *testing.T) {
	got := WithoutEnv([]string{"LAB_PORT_GO=1", "LAB=2", "PATH=/bin", "GOFLAGS=-x", "XLAB_A=3"}, "LAB_*", "GOFLAGS")
	want := []string{"LAB=2", "PATH=/bin", "XLAB_A=3"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
}

// recorder is a testing.TB that records Fatalf and Skipf instead of
// stopping the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recorder) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		err      error
		fatal    bool
		skip     bool
		inCIwant bool
	}{
		{"", nil, false, false, false},
		{"true", nil, false, false, true},
		{"", errors.New("dnsdist not found"), false, true, false},
		{"false", errors.New("dnsdist not found"), false, true, false},
		{"true", errors.New("dnsdist not found"), true, false, true},
		{"1", errors.New("dnsdist not found"), true, false, true},
	} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		Require(r, "dnsdist", tc.err)
		if (r.fatal != "") != tc.fatal || (r.skip != "") != tc.skip {
			t.Errorf("CI=%q err=%v: got fatal %q skip %q, want fatal %v skip %v", tc.ci, tc.err, r.fatal, r.skip, tc.fatal, tc.skip)
		}
		if msg := r.fatal + r.skip; tc.err != nil && !strings.Contains(msg, "dnsdist not found") {
			t.Errorf("CI=%q: message %q does not carry the error", tc.ci, msg)
		}
		if got := InCI(); got != tc.inCIwant {
			t.Errorf("CI=%q: InCI got %v, want %v", tc.ci, got, tc.inCIwant)
		}
	}
}

// BenchmarkStart measures Start plus Close:
// go test -run=^$ -bench=Start -benchtime=5x ./tests/labtest
func BenchmarkStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"all", Options{}},
		{"no-go-no-dnssec", Options{NoGoServer: true, NoDNSSEC: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.opts.NoGoServer {
				if err := checkTools(); err != nil {
					Require(b, "test lab", err)
				}
			} else {
				_, err := GoServerBinary()
				Require(b, "Go DNSCrypt server", err)
			}
			var start time.Duration
			for b.Loop() {
				begin := time.Now()
				l, err := Start(bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				start += time.Since(begin)
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(start.Milliseconds())/float64(b.N), "start-ms/op")
		})
	}
}
