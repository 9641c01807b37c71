package cli

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jedisct1/go-dnsstamps"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

const (
	scalewayAddr = "212.47.228.136:443"
	scalewayName = "2.dnscrypt-cert.fr.dnscrypt.org"
	scalewayKey  = "E801:B84E:A606:BFB0:BAC0:CE43:445B:B15E:BA64:B02F:A3C4:AA31:AE10:636A:0790:324D"
	scalewayStmp = "sdns://AQcAAAAAAAAADjIxMi40Ny4yMjguMTM2IOgBuE6mBr-wusDOQ0RbsV66ZLAvo8SqMa4QY2oHkDJNHzIuZG5zY3J5cHQtY2VydC5mci5kbnNjcnlwdC5vcmc"
	csvPath      = "testdata/resolvers-1.9.5.csv"
)

const randomCSV = `Name,Full name,DNSSEC validation,No logs,Resolver address,Provider name,Provider public key
logger,Logs,yes,no,192.0.2.1:443,2.dnscrypt-cert.logger.example,` + scalewayKey + `
v6,IPv6,yes,yes,[2001:db8::1]:443,2.dnscrypt-cert.v6.example,` + scalewayKey + `
good,Good,yes,yes,192.0.2.3:443,2.dnscrypt-cert.good.example,` + scalewayKey + `
`

// testEnv reads testdata and a few in-memory files, and knows one user.
func testEnv() *Env {
	mem := memFiles(map[string]string{
		"/mem/random.csv": randomCSV,
		"/mem/system.csv": "Name,Resolver address,Provider name,Provider public key\nold-one,192.0.2.9,2.dnscrypt-cert.old.example," + scalewayKey + "\n",
		"/mem/set.csv":    setCSV,
		"/mem/key":        "0101" + testSKHex + "\n",
		"/mem/badkey":     "0101",
		"/mem/badrow.csv": "Name,Resolver address,Provider name,Provider public key\nbroken,192.0.2.1,2.dnscrypt-cert.b.example,E801\nfine,192.0.2.2,2.dnscrypt-cert.f.example," + scalewayKey + "\n",
	})
	return &Env{
		Open: func(path string) (io.ReadCloser, error) {
			if strings.HasPrefix(path, "/mem/") {
				return mem(path)
			}
			return os.Open(path)
		},
		LookupUser: func(name string) (*User, error) {
			if name == "dnscrypt" {
				return &User{Name: "dnscrypt", UID: 900, GID: 900, Groups: []int{900}, Home: "/var/empty"}, nil
			}
			return nil, errors.New("unknown user")
		},
		SystemLists: []string{"/mem/nosuch.csv", "/mem/system.csv"},
	}
}

func plan(t *testing.T, args ...string) *Plan {
	t.Helper()
	o, err := ParseArgs(args)
	if err != nil {
		t.Fatalf("ParseArgs(%q): %v", args, err)
	}
	p, err := o.Plan(testEnv())
	if err != nil {
		t.Fatalf("Plan(%q): %v", args, err)
	}
	return p
}

func hasNote(p *Plan, level slog.Level, msg string) bool {
	return slices.ContainsFunc(p.Notes, func(n Note) bool { return n.Level == level && strings.Contains(n.Msg, msg) })
}

func TestPlanDefaults(t *testing.T) {
	p := plan(t)
	c := p.Proxy
	if c.Resolvers[0].Addr != scalewayAddr || c.Resolvers[0].ProviderName != scalewayName || certs.Fingerprint(c.Resolvers[0].ProviderKey) != scalewayKey {
		t.Errorf("default resolver: got %s %s %s", c.Resolvers[0].Addr, c.Resolvers[0].ProviderName, certs.Fingerprint(c.Resolvers[0].ProviderKey))
	}
	if p.Listen != "127.0.0.1:53" {
		t.Errorf("listen: got %s, want 127.0.0.1:53", p.Listen)
	}
	if p.Log != (LogSettings{MaxPriority: 6}) {
		t.Errorf("log: got %+v", p.Log)
	}
	if c.SOCKS != nil || c.EphemeralKeys || c.ClientKey != nil || c.TCPOnly || c.EDNSPayloadSize != 0 || c.MaxActiveRequests != 0 {
		t.Errorf("proxy config: got %+v", c)
	}
	if p.Daemonize || p.PidFile != "" || p.User != nil || p.Test {
		t.Errorf("plan: got %+v", p)
	}
	if !hasNote(p, slog.LevelInfo, "No resolver given: using [scaleway-fr] from the built-in list") {
		t.Errorf("notes: got %+v", p.Notes)
	}
}

func TestPlanResolverSelection(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		addr     string
		provider string
		notes    []Note
	}{
		{"-R with -L", []string{"-R", "cs-uswest", "-L", csvPath}, "76.164.234.11:443", "2.dnscrypt-cert.cryptostorm.is",
			[]Note{{slog.LevelInfo, "- [cs-uswest] does not support DNS Security Extensions"}, {slog.LevelInfo, "+ Namecoin domains can be resolved"}, {slog.LevelInfo, "+ Provider supposedly doesn't keep logs"}}},
		{"-R ignores case", []string{"--resolver-name=DNSCRYPT.EU-NL", "-L", csvPath}, "176.56.237.171:443", "2.dnscrypt-cert.resolver1.dnscrypt.eu",
			[]Note{{slog.LevelInfo, "+ DNS Security Extensions are supported"}}},
		{"-R logging resolver", []string{"-R", "cisco", "-L", csvPath}, "208.67.220.220:443", "2.dnscrypt-cert.opendns.com",
			[]Note{{slog.LevelWarn, "- [cisco] logs your activity"}}},
		{"-R IPv6 row", []string{"-R", "cisco-ipv6", "-L", csvPath}, "[2620:0:ccc::2]:443", "2.dnscrypt-cert.opendns.com", nil},
		{"-R with -r override", []string{"-R", "cisco", "-L", csvPath, "-r", "192.0.2.7:5353"}, "192.0.2.7:5353", "2.dnscrypt-cert.opendns.com",
			[]Note{{slog.LevelInfo, "Resolver address forced to [192.0.2.7:5353]"}}},
		{"-R with -N and -k", []string{"-R", "cisco", "-L", csvPath, "-N", "2.x", "-k", scalewayKey}, "208.67.220.220:443", "2.dnscrypt-cert.opendns.com",
			[]Note{{slog.LevelWarn, "--provider-name and --provider-key are ignored"}}},
		{"-R random", []string{"-R", "random", "-L", "/mem/random.csv"}, "192.0.2.3:443", "2.dnscrypt-cert.good.example",
			[]Note{{slog.LevelInfo, "Randomly chosen resolver: [good]"}}},
		{"-R RANDOM", []string{"-R", "RANDOM", "-L", "/mem/random.csv"}, "192.0.2.3:443", "2.dnscrypt-cert.good.example", nil},
		{"-R built-in", []string{"-R", "scaleway-fr"}, scalewayAddr, scalewayName, nil},
		{"-R next to a bad row", []string{"-R", "fine", "-L", "/mem/badrow.csv"}, "192.0.2.2:443", "2.dnscrypt-cert.f.example", nil},
		{"-R from a system list", []string{"-R", "old-one"}, "192.0.2.9:443", "2.dnscrypt-cert.old.example", nil},
		{"-r -N -k", []string{"-r", "192.0.2.1", "-N", "2.dnscrypt-cert.example.com", "-k", scalewayKey}, "192.0.2.1:443", "2.dnscrypt-cert.example.com", nil},
		{"-r IPv6 bare", []string{"-r", "2001:db8::53", "-N", "2.x", "-k", scalewayKey}, "[2001:db8::53]:443", "2.x", nil},
		{"-r IPv6 port", []string{"-r", "[2001:db8::53]:5353", "-N", "2.x", "-k", scalewayKey}, "[2001:db8::53]:5353", "2.x", nil},
		{"-r --resolver-port", []string{"-r", "192.0.2.1", "--resolver-port=5353", "-N", "2.x", "-k", scalewayKey}, "192.0.2.1:5353", "2.x", nil},
		{"default --resolver-port", []string{"--resolver-port=5353"}, "212.47.228.136:5353", scalewayName, nil},
		{"-R IPv6 row --resolver-port", []string{"-R", "cisco-ipv6", "-L", csvPath, "--resolver-port=5353"}, "[2620:0:ccc::2]:5353", "2.dnscrypt-cert.opendns.com", nil},
		{"host name port with a zero, --resolver-port", []string{"--tor", "-r", "r.example:0443", "--resolver-port=443", "-N", "2.x", "-k", scalewayKey}, "r.example:443", "2.x", nil},
		{"--stamp", []string{"--stamp", scalewayStmp}, scalewayAddr, scalewayName, nil},
		{"--stamp with -r", []string{"--stamp", scalewayStmp, "-r", "127.0.0.1:4443"}, "127.0.0.1:4443", scalewayName, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(t, tt.args...)
			if p.Proxy.Resolvers[0].Addr != tt.addr || p.Proxy.Resolvers[0].ProviderName != tt.provider || len(p.Proxy.Resolvers[0].ProviderKey) != 32 {
				t.Errorf("got %s %s %x, want %s %s", p.Proxy.Resolvers[0].Addr, p.Proxy.Resolvers[0].ProviderName, p.Proxy.Resolvers[0].ProviderKey, tt.addr, tt.provider)
			}
			for _, n := range tt.notes {
				if !hasNote(p, n.Level, n.Msg) {
					t.Errorf("note %v %q missing from %+v", n.Level, n.Msg, p.Notes)
				}
			}
		})
	}
}

func TestPlanErrors(t *testing.T) {
	doq := dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDoQ, ServerAddrStr: "192.0.2.1:853", ProviderName: "doq.example"}
	onion := dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDoH, ProviderName: "resolver.onion", Path: "/dns-query"}
	key := []string{"-N", "2.dnscrypt-cert.x", "-k", scalewayKey}
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"-E and -K", []string{"-E", "-K", "/mem/key"}, 1, "--client-key and --ephemeral-keys are mutually exclusive"},
		{"-l and -S", []string{"-l", "/tmp/log", "-S"}, 1, "--logfile and --syslog are mutually exclusive"},
		{"-d -l -S", []string{"-d", "-S", "-l", "/tmp/log"}, 1, "--logfile and --syslog are mutually exclusive"},
		{"-N version", append([]string{"-r", "192.0.2.1", "-k", scalewayKey}, "-N", "1.dnscrypt-cert.x"), 1, "Unsupported server protocol version"},
		{"-N without dot", []string{"-r", "192.0.2.1", "-k", scalewayKey, "-N", "2"}, 1, "Unsupported server protocol version"},
		{"-N with a space", []string{"-r", "192.0.2.1", "-k", scalewayKey, "-N", "2.a b"}, 1, "Invalid provider name"},
		{"-k short", []string{"-r", "192.0.2.1", "-N", "2.x", "-k", "E801:B84E"}, 1, "Invalid provider key: [E801:B84E]: invalid provider key: 4 bytes, want 32"},
		{"-r alone", []string{"-r", "192.0.2.1"}, 1, "--provider-name and --provider-key missing"},
		{"-N -k alone", key, 1, "--resolver-address missing"},
		{"-r bad", append([]string{"-r", "192.0.2.300"}, key...), 1, "Unsupported resolver address: 192.0.2.300"},
		{"-r name without proxy", append([]string{"-r", "dns.example:443"}, key...), 1, "host names only work through --proxy or --tor"},
		{"-r port conflict", append([]string{"-r", "192.0.2.1:443", "--resolver-port=53"}, key...), 1, "--resolver-port=53 conflicts with the port of --resolver-address=192.0.2.1:443"},
		{"-R unknown", []string{"-R", "nosuch", "-L", csvPath}, 1, "No resolver named [nosuch] found in the [" + csvPath + "] list"},
		{"-R unknown, built-in", []string{"-R", "nosuch"}, 1, "No resolver named [nosuch] found in the [built-in] or [/mem/system.csv] list"},
		{"-L unreadable", []string{"-R", "x", "-L", "/mem/nosuch.csv"}, 1, "Unable to read [/mem/nosuch.csv]: file does not exist"},
		{"-L not a list", []string{"-R", "x", "-L", "/mem/key"}, 1, "Unable to use the resolvers list [/mem/key]"},
		{"-R unusable row", []string{"-R", "Broken", "-L", "/mem/badrow.csv"}, 1, "Resolver [Broken] in the [/mem/badrow.csv] list cannot be used: line 2: resolver \"broken\": invalid provider key: 2 bytes, want 32"},
		{"-R random without candidates", []string{"-R", "random", "-L", csvPath + "x"}, 1, "Unable to read"},
		{"--stamp bad", []string{"--stamp=sdns://AAAA"}, 1, "Invalid stamp: [sdns://AAAA]"},
		{"--stamp DoQ", []string{"--stamp=" + doq.String()}, 1, "Unsupported stamp: [" + doq.String() + "]: QUIC stamps are not supported"},
		{"--stamp by name without a proxy", []string{"--stamp=" + onion.String()}, 1,
			"Unsupported resolver: resolver.onion: resolver.onion:443 is a host name, which works only through --proxy or --tor"},
		{"URL by name without a proxy", []string{"--resolver-address=tls://dns.example"}, 1,
			"Unsupported resolver: tls://dns.example: dns.example:853 is a host name, which works only through --proxy or --tor (they resolve it: never a local lookup)"},
		{"URL with a provider name", []string{"--resolver-address=tls://192.0.2.1", "--provider-name=2.dnscrypt-cert.x"}, 1,
			"names a resolver by itself: drop --provider-name and --provider-key (they go with the plain --resolver-address=IP[:PORT] of a DNSCrypt resolver)"},
		{"stamp and a resolver address", []string{"--stamp=" + onion.String(), "--resolver-address=192.0.2.1"}, 1,
			"--stamp gives the address of a https resolver: drop --resolver-address"},
		{"bad URL", []string{"--resolver-address=tls://bad host"}, 1, "Invalid resolver address: [tls://bad host]"},
		{"--stamp and -k", []string{"--stamp=" + scalewayStmp, "-k", scalewayKey}, 1, "--stamp already gives the provider name and key"},
		{"-a bad", []string{"-a", "localhost"}, 1, "Unsupported local address: localhost"},
		{"-a bad port", []string{"-a", "127.0.0.1:0"}, 1, "Unsupported local address: 127.0.0.1:0"},
		{"-a -P conflict", []string{"-a", "127.0.0.1:53", "-P", "5800"}, 1, "--local-port=5800 conflicts with the port of --local-address=127.0.0.1:53"},
		{"-u unknown", []string{"-u", "nosuchuser"}, 1, "Unknown user: [nosuchuser]"},
		{"-K unreadable", []string{"-K", "/mem/nosuch"}, 1, "Client key file [/mem/nosuch] could not be used: file does not exist"},
		{"-K bad", []string{"-K", "/mem/badkey"}, 1, "Client key file [/mem/badkey] could not be used: unsupported client key format: 2 bytes, want 34 (01 01 + key) or 32 (key)"},
		{"--isolation without proxy", []string{"--isolation=query"}, 1, "--isolation needs --proxy or --tor"},
		{"--isolation-epoch without proxy", []string{"--isolation-epoch=1m"}, 1, "--isolation-epoch needs --proxy or --tor"},
		{"--optimistic-data without proxy", []string{"--optimistic-data"}, 1, "--optimistic-data needs --proxy or --tor"},
		{"--proxy name", []string{"--proxy=socks5://tor.example:9050"}, 1, "\"tor.example\" is not an IP address"},
		{"--proxy scheme", []string{"--proxy=http://127.0.0.1:8080"}, 1, "unsupported scheme \"http\""},
		{"--proxy port", []string{"--proxy=socks5://127.0.0.1:99999"}, 1, "port \"99999\" out of range"},
		{"--proxy path", []string{"--proxy=socks5://127.0.0.1:9050/x"}, 1, "unexpected text after the address"},
		{"--proxy empty", []string{"--proxy=socks5://"}, 1, "no proxy address"},
		{"--proxy user without password", []string{"--proxy=socks5://user@127.0.0.1:9050"}, 1, "a user name needs a password (RFC 1929: 1..255 bytes"},
		{"--proxy empty password", []string{"--proxy=socks5://user:@127.0.0.1:9050"}, 1, "a user name needs a password"},
		{"--proxy long password", []string{"--proxy=socks5://user:" + strings.Repeat("p", 256) + "@127.0.0.1:9050"}, 1, "limited to 255 bytes"},
		{"--proxy zone", []string{"--proxy=socks5://[fe80::1%25eth0]:9050"}, 1, "is not an IP address"},
		{"--tor -E -K", []string{"--tor", "-E", "-K", "/mem/key"}, 1, "mutually exclusive"},
		{"-r name bad through proxy", append([]string{"--tor", "-r", "bad_host!:443"}, key...), 1, "Unsupported resolver address: bad_host!:443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantPlanError(t, tt.args, tt.code, tt.msg) })
	}
}

// wantPlanError requires Plan to refuse args with exit status code and a
// message holding msg.
func wantPlanError(t *testing.T, args []string, code int, msg string) {
	t.Helper()
	o, err := ParseArgs(args)
	if err != nil {
		t.Fatalf("ParseArgs(%q): %v", args, err)
	}
	p, err := o.Plan(testEnv())
	if err == nil {
		t.Fatalf("Plan(%q) = %+v, want an error", args, p)
	}
	ee, ok := errors.AsType[*ExitError](err)
	if !ok {
		t.Fatalf("Plan(%q): %T %v, want *ExitError", args, err, err)
	}
	if ee.Code != code || !strings.Contains(ee.Msg, msg) {
		t.Errorf("Plan(%q): got exit %d %q, want exit %d %q", args, ee.Code, ee.Msg, code, msg)
	}
}

func TestPlanListen(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "127.0.0.1:53"},
		{[]string{"-a", "127.0.0.2"}, "127.0.0.2:53"},
		{[]string{"-a", "0.0.0.0:5353"}, "0.0.0.0:5353"},
		{[]string{"-a", "::1"}, "[::1]:53"},
		{[]string{"-a", "[::1]"}, "[::1]:53"},
		{[]string{"-a", "[::1]:40"}, "[::1]:40"},
		{[]string{"--local-port=5800"}, "127.0.0.1:5800"},
		{[]string{"-P", "5800", "-a", "10.0.0.1"}, "10.0.0.1:5800"},
		{[]string{"-a", "10.0.0.1:5800", "-P", "5800"}, "10.0.0.1:5800"},
		{[]string{"-a", "::1", "-P", "5800"}, "[::1]:5800"},
	} {
		if got := plan(t, tt.args...).Listen; got != tt.want {
			t.Errorf("%q: got %s, want %s", tt.args, got, tt.want)
		}
	}
}

func TestPlanProcessAndLogging(t *testing.T) {
	p := plan(t, "-d")
	if !p.Daemonize || !p.Log.Syslog {
		t.Errorf("-d: got daemonize %v syslog %v, want both (1.x: -d implies -S)", p.Daemonize, p.Log.Syslog)
	}
	p = plan(t, "-d", "-l", "/var/log/x.log", "-Z", "pfx", "-m", "3")
	if !p.Daemonize || p.Log != (LogSettings{File: "/var/log/x.log", Prefix: "pfx", MaxPriority: 3}) {
		t.Errorf("-d -l: got %+v", p.Log)
	}
	p = plan(t, "-m", "0")
	if p.Log.MaxPriority != 0 {
		t.Errorf("-m 0: got %d", p.Log.MaxPriority)
	}
	p = plan(t, "-u", "dnscrypt", "-p", "/run/x.pid")
	if p.User == nil || p.User.UID != 900 || p.PidFile != "/run/x.pid" {
		t.Errorf("-u -p: got %+v %q", p.User, p.PidFile)
	}
	p = plan(t, "-t", "60", "-d", "-p", "/run/x.pid")
	if !p.Test || p.TestMargin != time.Hour || p.Daemonize || p.PidFile != "" || p.Log.Syslog {
		t.Errorf("--test: got %+v", p)
	}
	if !hasNote(p, slog.LevelInfo, "--test: not going to the background") || !hasNote(p, slog.LevelInfo, "--test: no pid file") {
		t.Errorf("--test notes: got %+v", p.Notes)
	}
	p = plan(t, "-T", "-I", "-n", "1000", "-e", "4096", "--timeout=3s")
	if c := p.Proxy; !c.TCPOnly || !c.IgnoreTimestamps || c.MaxActiveRequests != 1000 || c.EDNSPayloadSize != 4096 || c.Timeout != 3*time.Second {
		t.Errorf("-T -I -n -e --timeout: got %+v", c)
	}
	for _, e := range []string{"0", "100", "512"} {
		if got := plan(t, "-e", e).Proxy.EDNSPayloadSize; got != 512 {
			t.Errorf("-e %s: got %d, want 512 (rewrite off)", e, got)
		}
	}
}

func TestPlanKeys(t *testing.T) {
	p := plan(t, "-K", "/mem/key")
	if p.Proxy.ClientKey == nil || p.Proxy.EphemeralKeys {
		t.Errorf("-K: got key %v ephemeral %v", p.Proxy.ClientKey, p.Proxy.EphemeralKeys)
	}
	p = plan(t, "-E")
	if p.Proxy.ClientKey != nil || !p.Proxy.EphemeralKeys {
		t.Errorf("-E: got key %v ephemeral %v", p.Proxy.ClientKey, p.Proxy.EphemeralKeys)
	}
	p = plan(t, "-E", "--ephemeral-keys=false")
	if p.Proxy.ClientKey != nil || p.Proxy.EphemeralKeys {
		t.Errorf("-E --ephemeral-keys=false: got key %v ephemeral %v", p.Proxy.ClientKey, p.Proxy.EphemeralKeys)
	}
	p = plan(t, "-E=false", "-K", "/mem/key")
	if p.Proxy.ClientKey == nil || p.Proxy.EphemeralKeys {
		t.Errorf("-E=false -K: got key %v ephemeral %v", p.Proxy.ClientKey, p.Proxy.EphemeralKeys)
	}
}

func TestPlanTor(t *testing.T) {
	p := plan(t, "--tor")
	want := proxy.SOCKS{Addr: "127.0.0.1:9050", Isolation: proxy.IsolationEpoch}
	if p.Proxy.SOCKS == nil || *p.Proxy.SOCKS != want {
		t.Errorf("--tor: got %+v, want %+v", p.Proxy.SOCKS, want)
	}
	if !p.Proxy.EphemeralKeys || p.Proxy.ClientKey != nil {
		t.Errorf("--tor: ephemeral keys off")
	}

	p = plan(t, "--tor", "--proxy=socks5://127.0.0.1:9150", "--isolation=query", "--isolation-epoch=30m", "--optimistic-data", "--no-ephemeral-keys")
	want = proxy.SOCKS{Addr: "127.0.0.1:9150", Isolation: proxy.IsolationQuery, Epoch: 30 * time.Minute, OptimisticData: true}
	if *p.Proxy.SOCKS != want || p.Proxy.EphemeralKeys {
		t.Errorf("--tor with options: got %+v ephemeral %v, want %+v", p.Proxy.SOCKS, p.Proxy.EphemeralKeys, want)
	}

	p = plan(t, "--proxy=socks5h://user:p%40ss@[::1]", "--isolation", "none")
	want = proxy.SOCKS{Addr: "[::1]:1080", User: "user", Password: "p@ss", Isolation: proxy.IsolationNone}
	if *p.Proxy.SOCKS != want || !p.Proxy.EphemeralKeys {
		t.Errorf("--proxy: got %+v ephemeral %v, want %+v", p.Proxy.SOCKS, p.Proxy.EphemeralKeys, want)
	}

	p = plan(t, "--proxy=192.0.2.5:1081")
	if p.Proxy.SOCKS.Addr != "192.0.2.5:1081" {
		t.Errorf("bare --proxy: got %s", p.Proxy.SOCKS.Addr)
	}

	p = plan(t, "--tor", "-K", "/mem/key")
	if p.Proxy.EphemeralKeys || p.Proxy.ClientKey == nil {
		t.Errorf("--tor -K: the explicit key must win over the Tor default")
	}

	p = plan(t, "--tor", "-r", "DNSCrypt.Example.onion", "-N", "2.dnscrypt-cert.x", "-k", scalewayKey)
	if p.Proxy.Resolvers[0].Addr != "dnscrypt.example.onion:443" {
		t.Errorf("host name through Tor: got %s", p.Proxy.Resolvers[0].Addr)
	}
	p = plan(t, "--tor", "-r", "resolver.example:5353", "--stamp", scalewayStmp)
	if p.Proxy.Resolvers[0].Addr != "resolver.example:5353" || p.Proxy.Resolvers[0].ProviderName != scalewayName {
		t.Errorf("host name through Tor with a stamp: got %s %s", p.Proxy.Resolvers[0].Addr, p.Proxy.Resolvers[0].ProviderName)
	}
	p = plan(t, "--tor", "-r", "192.0.2.1", "-N", "2.x", "-k", scalewayKey)
	if p.Proxy.Resolvers[0].Addr != "192.0.2.1:443" {
		t.Errorf("IP through Tor: got %s", p.Proxy.Resolvers[0].Addr)
	}
}

func TestPlanFromConfigFile(t *testing.T) {
	o, err := Parse([]string{"testdata/dnscrypt-proxy.conf"})
	if err != nil {
		t.Fatal(err)
	}
	env := testEnv()
	env.LookupUser = func(name string) (*User, error) { return &User{Name: name, UID: 901, GID: 901}, nil }
	o.ResolversList = csvPath // the file names /usr/local/share/...
	p, err := o.Plan(env)
	if err != nil {
		t.Fatal(err)
	}
	if p.Proxy.Resolvers[0].Addr != "176.56.237.171:443" || !p.Proxy.TCPOnly || p.Listen != "127.0.0.2:53" ||
		p.Log.File != "/var/log/dnscrypt-proxy.log" || p.PidFile != "/var/run/dnscrypt-proxy.pid" || p.User.Name != "_dnscrypt-proxy" {
		t.Errorf("got %+v", p)
	}
}

func TestParseConfigMode(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		path := dir + "/" + name
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.conf", "TCPOnly yes\nLocalAddress 127.0.0.1:40\nLogLevel 5\n")
	other := write("other.conf", "Daemonize yes\n")
	missing := dir + "/nosuch.conf"
	for _, tt := range []struct {
		name string
		args []string
		want func(o *Options) bool
	}{
		{"file alone (1.x)", []string{good}, func(o *Options) bool {
			return o.TCPOnly && o.LocalAddress == "127.0.0.1:40" && o.LogLevel == 5 && o.ConfigFile == good && o.Args == nil
		}},
		{"file then option", []string{good, "-d"}, func(o *Options) bool {
			return o.TCPOnly && o.LocalAddress == "127.0.0.1:40" && o.Daemonize && o.ConfigFile == good
		}},
		{"option then file", []string{"-m", "7", good}, func(o *Options) bool {
			return o.TCPOnly && o.LogLevel == 7 && o.LocalAddress == "127.0.0.1:40"
		}},
		{"the command line wins", []string{"--loglevel=7", good, "-a", "127.0.0.1:41", "--tcp-only=false"}, func(o *Options) bool {
			return !o.TCPOnly && o.LogLevel == 7 && o.LocalAddress == "127.0.0.1:41" && o.Given("tcp-only")
		}},
		// The file's values of an option the command line gives are
		// dropped unchecked (all of them, for a repeatable option).
		{"the command line replaces a bad value", []string{write("level9.conf", "LogLevel 9\nTCPOnly yes\n"), "-m", "7"}, func(o *Options) bool {
			return o.LogLevel == 7 && o.TCPOnly
		}},
		{"--no-ephemeral-keys over EphemeralKeys", []string{write("eph.conf", "EphemeralKeys yes\n"), "--no-ephemeral-keys"}, func(o *Options) bool {
			return !o.EphemeralKeys && o.Given("ephemeral-keys")
		}},
		{"-E over NoEphemeralKeys", []string{write("noeph.conf", "NoEphemeralKeys yes\n"), "-E"}, func(o *Options) bool {
			return o.EphemeralKeys
		}},
		{"file after --", []string{"-d", "--", good}, func(o *Options) bool {
			return o.TCPOnly && o.Daemonize && o.ConfigFile == good
		}},
		{"-h: no file read", []string{missing, "-h"}, func(o *Options) bool { return o.Help && o.ConfigFile == "" }},
		{"-V: no file read", []string{"-V", missing}, func(o *Options) bool { return o.Version && o.ConfigFile == "" }},
		{"no file", []string{"-d"}, func(o *Options) bool { return o.Daemonize && o.ConfigFile == "" && o.Args == nil }},
	} {
		o, err := Parse(tt.args)
		if err != nil || !tt.want(o) {
			t.Errorf("%s: Parse(%q) = %+v, %v", tt.name, tt.args, o, err)
		}
	}

	for _, tt := range []struct {
		name string
		args []string
		hint bool
		msg  string
	}{
		{"two files", []string{good, other}, true, "more than one argument that is not an option: [" + good + "] [" + other + "]"},
		{"two files around an option", []string{good, "-d", other}, true, "[" + good + "] [" + other + "]"},
		{"a file and a word", []string{"-m", "7", good, "extra"}, true, "[" + good + "] [extra]"},
		{"bad value in the file", []string{write("bad.conf", "EDNSPayloadSize 99999\n"), "-d"}, false, dir + "/bad.conf: Invalid EDNS payload size: [99999]"},
		{"bad log level in the file", []string{write("level.conf", "LogLevel 8\n")}, false, dir + "/level.conf: Invalid max log level: [8] (want 0..7)"},
		{"syntax error in the file", []string{"-d", write("syntax.conf", "Tor yes\nNoSuch 1\n")}, false, dir + "/syntax.conf:2: unknown property [NoSuch]"},
		{"missing file", []string{missing, "-d"}, false, "Unable to read the configuration file [" + missing + "]"},
		{"a directory", []string{dir, "-d"}, false, "Unable to read the configuration file [" + dir + "]"},
		{"bad option: the file is not read", []string{missing, "--bogus"}, true, "unrecognized option '--bogus'"},
	} {
		_, err := Parse(tt.args)
		ee, ok := errors.AsType[*ExitError](err)
		if !ok || ee.Code != ExitFailure || ee.Hint != tt.hint || !strings.Contains(ee.Msg, tt.msg) {
			t.Errorf("%s: Parse(%q): got %v, want exit 1, hint %v, %q", tt.name, tt.args, err, tt.hint, tt.msg)
		}
	}
}

func TestLookupUser(t *testing.T) {
	u, err := LookupUser("root")
	if err != nil {
		t.Skipf("no root account: %v", err)
	}
	if u.Name != "root" || u.UID != 0 || u.GID != 0 || len(u.Groups) == 0 || u.Groups[0] != 0 {
		t.Errorf("got %+v", u)
	}
	if _, err := LookupUser("no-such-user-for-dnscrypt-proxy"); err == nil {
		t.Error("unknown user: no error")
	}
}

func TestInvalidConfig(t *testing.T) {
	key := make([]byte, 32)
	key[0] = 1
	good := proxy.Config{Resolvers: []upstream.Spec{{Kind: upstream.KindDNSCrypt, Addr: "192.0.2.1:443",
		ProviderName: scalewayName, ProviderKey: key}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v): %v", good, err)
	}
	bad := good
	bad.Resolvers = nil
	if got, want := invalidConfig(bad.Validate()), "Invalid configuration: no resolver"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// Every reason, on one line, without package prefixes.
	got := invalidConfig(proxy.Config{MaxActiveRequests: -1, Resolvers: []upstream.Spec{{Kind: upstream.KindDNSCrypt,
		Addr: "192.0.2.1:443", ProviderName: scalewayName}}}.Validate())
	if !strings.HasPrefix(got, "Invalid configuration: resolver 192.0.2.1:443: provider key must be 32 bytes, got 0; ") ||
		!strings.HasSuffix(got, "; max active requests -1 must be positive") ||
		strings.ContainsAny(got, "\n") || strings.Contains(got, "proxy: ") || strings.Contains(got, "certs: ") {
		t.Errorf("got %q", got)
	}
}

func TestPlanReadsSystemListsWhenReached(t *testing.T) {
	sys := []string{"/mem/nosuch.csv", "/mem/system.csv"}
	for _, tt := range []struct {
		args   []string
		opened []string
		err    string
	}{
		{[]string{"-R", "scaleway-fr"}, nil, ""},
		{[]string{"-R", "random"}, nil, ""},
		{[]string{"-R", "cisco", "-L", csvPath}, []string{csvPath}, ""},
		{[]string{"-R", "old-one"}, sys, ""},
		{[]string{"-R", "nosuch"}, sys, "No resolver named [nosuch] found in the [built-in] or [/mem/system.csv] list"},
		// Several names: each list read once at most.
		{[]string{"-R", "old-one,scaleway-fr,nosuch"}, sys, "No resolver named [nosuch] found in the [built-in] or [/mem/system.csv] list"},
		{[]string{"-R", "scaleway-fr,random:2"}, nil, ""},
		{[]string{"-R", "cisco,random", "-L", csvPath}, []string{csvPath}, ""},
	} {
		env := testEnv()
		var opened []string
		open := env.Open
		env.Open = func(path string) (io.ReadCloser, error) {
			opened = append(opened, path)
			return open(path)
		}
		o, err := ParseArgs(tt.args)
		if err != nil {
			t.Fatal(err)
		}
		_, err = o.Plan(env)
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%q: got error %v, want %q", tt.args, err, tt.err)
		}
		if !slices.Equal(opened, tt.opened) {
			t.Errorf("%q: opened %q, want %q", tt.args, opened, tt.opened)
		}
	}
}

// TestPlanOtherResolvers: plain, DoT and DoH resolvers from stamps and URL
// forms, IP addresses directly, host names through a proxy only.
func TestPlanOtherResolvers(t *testing.T) {
	dot := dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeTLS, ServerAddrStr: "192.0.2.1", ProviderName: "dns.example:8853"}
	plain := dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypePlain, ServerAddrStr: "192.0.2.2"}
	for _, tc := range []struct {
		args []string
		want upstream.Spec
	}{
		{[]string{"--stamp=" + dot.String()}, upstream.Spec{Kind: upstream.KindTLS, Name: "dns.example:8853",
			Addr: "192.0.2.1:8853", ServerName: "dns.example"}},
		{[]string{"--stamp=" + plain.String()}, upstream.Spec{Kind: upstream.KindTCP, Addr: "192.0.2.2:53"}},
		{[]string{"--resolver-address=tcp://192.0.2.3"}, upstream.Spec{Kind: upstream.KindTCP, Name: "tcp://192.0.2.3",
			Addr: "192.0.2.3:53"}},
		{[]string{"--tor", "--resolver-address=https://abc.onion/dns-query"}, upstream.Spec{Kind: upstream.KindHTTPS,
			Name: "https://abc.onion/dns-query", Addr: "abc.onion:443", ServerName: "abc.onion", Path: "/dns-query"}},
	} {
		o, err := ParseArgs(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		p, err := o.Plan(testEnv())
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if len(p.Proxy.Resolvers) != 1 || !reflect.DeepEqual(p.Proxy.Resolvers[0], tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.args, p.Proxy.Resolvers, tc.want)
		}
	}
}

// TestPlanOnionFromList: the built-in list's Cloudflare onion services, by
// name through Tor only.
func TestPlanOnionFromList(t *testing.T) {
	for name, want := range map[string]upstream.Spec{
		"cloudflare-onion-doh": {Kind: upstream.KindHTTPS, Name: "cloudflare-onion-doh",
			Addr:       "dns4torpnlfs2ifuz2s2yf3fc7rdmsbhm6rw75euj35pac6ap25zgqad.onion:443",
			ServerName: "tor.cloudflare-dns.com", Path: "/dns-query"},
		"cloudflare-onion-dot": {Kind: upstream.KindTLS, Name: "cloudflare-onion-dot",
			Addr:       "dns4torpnlfs2ifuz2s2yf3fc7rdmsbhm6rw75euj35pac6ap25zgqad.onion:853",
			ServerName: "tor.cloudflare-dns.com"},
	} {
		p := plan(t, "--tor", "-R", name)
		if len(p.Proxy.Resolvers) != 1 || !reflect.DeepEqual(p.Proxy.Resolvers[0], want) {
			t.Errorf("-R %s: %+v, want %+v", name, p.Proxy.Resolvers, want)
		}
		checkTorDefaults(t, p)
		o, err := ParseArgs([]string{"-R", name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Plan(testEnv()); err == nil || !strings.Contains(err.Error(), "works only through --proxy or --tor") {
			t.Errorf("-R %s without a proxy: %v, want a refusal", name, err)
		}
	}
}

// checkTorDefaults requires what --tor alone means: everything through
// Tor's default SOCKS port, a new circuit and key per isolation epoch of
// the default length, ephemeral keys, the rebinding protection on.
func checkTorDefaults(t *testing.T, p *Plan) {
	t.Helper()
	want := proxy.SOCKS{Addr: "127.0.0.1:9050", Isolation: proxy.IsolationEpoch}
	if p.Proxy.SOCKS == nil || *p.Proxy.SOCKS != want {
		t.Errorf("SOCKS %+v, want %+v", p.Proxy.SOCKS, want)
	}
	if !p.Proxy.EphemeralKeys || p.Proxy.FilterInternal != proxy.Auto || p.Proxy.Validate() != nil {
		t.Errorf("ephemeral keys %v, rebinding protection %v (want auto: on through SOCKS), %v",
			p.Proxy.EphemeralKeys, p.Proxy.FilterInternal, p.Proxy.Validate())
	}
}

// TestPlanReadmeOnion: the README's onion command line, "--tor -R
// cloudflare-onion-doh,random:2": Cloudflare's onion service over DoH
// first, then two DNSCrypt resolvers of the built-in list drawn by 1.x's
// random rule, rotated per epoch through Tor's default port.
func TestPlanReadmeOnion(t *testing.T) {
	p := plan(t, "--tor", "-R", "cloudflare-onion-doh,random:2")
	rs := p.Proxy.Resolvers
	if len(rs) != 3 {
		t.Fatalf("%d resolvers, want 3: %+v", len(rs), rs)
	}
	onion := upstream.Spec{Kind: upstream.KindHTTPS, Name: "cloudflare-onion-doh",
		Addr:       "dns4torpnlfs2ifuz2s2yf3fc7rdmsbhm6rw75euj35pac6ap25zgqad.onion:443",
		ServerName: "tor.cloudflare-dns.com", Path: "/dns-query"}
	if !reflect.DeepEqual(rs[0], onion) {
		t.Errorf("first resolver %+v, want %+v", rs[0], onion)
	}
	for _, r := range rs[1:] {
		if r.Kind != upstream.KindDNSCrypt || r.Name == rs[0].Name || r.Addr == "" {
			t.Errorf("a random:2 pick %+v, want a DNSCrypt resolver of the list", r)
		}
	}
	if rs[1].Name == rs[2].Name {
		t.Errorf("random:2 drew %s twice", rs[1].Name)
	}
	checkTorDefaults(t, p)
	if p.Proxy.Selection != proxy.SelectAuto || !hasNote(p, slog.LevelInfo, "rotate") {
		t.Errorf("selection %v, notes %+v; want the default, rotation through Tor, said", p.Proxy.Selection, p.Notes)
	}
}
