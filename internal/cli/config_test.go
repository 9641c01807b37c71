package cli

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// memFiles opens files from a map, for Include tests without a disk.
func memFiles(files map[string]string) func(string) (io.ReadCloser, error) {
	return func(path string) (io.ReadCloser, error) {
		s, ok := files[path]
		if !ok {
			return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

func TestReadConfigFileRealistic(t *testing.T) {
	got, err := ReadConfigFile("testdata/dnscrypt-proxy.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--resolver-name=dnscrypt.eu-nl",
		"--resolvers-list=/usr/local/share/dnscrypt-proxy/dnscrypt-resolvers.csv",
		"--pidfile=/var/run/dnscrypt-proxy.pid",
		"--user=_dnscrypt-proxy",
		"--local-address=127.0.0.2:53",
		"--max-active-requests=250",
		"--edns-payload-size=1252",
		"--tcp-only",
		"--logfile=/var/log/dnscrypt-proxy.log",
		"--loglevel=6",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	o, err := ParseArgs(got)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.ResolverNames, []string{"dnscrypt.eu-nl"}) || !o.TCPOnly || o.Daemonize || o.EphemeralKeys || o.LocalAddress != "127.0.0.2:53" {
		t.Errorf("got options %+v", o)
	}
}

func TestReadConfigFileIncludes(t *testing.T) {
	got, err := ReadConfigFile("testdata/include-a.conf")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"--loglevel=7", "--tcp-only"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	got, err = ReadConfigFile("testdata/crlf.conf")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"--local-address=127.0.0.1:5353", "--tcp-only"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	_, err = ReadConfigFile("testdata/loop.conf")
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "too many levels of Include (16)") {
		t.Errorf("Include loop: got %v", err)
	}
	if exitCode(err) != 1 {
		t.Errorf("Include loop: exit %d, want 1", exitCode(err))
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"comments and blank lines", "# c\n\n   # indented\n\t\n", nil},
		{"separators", "LocalAddress 127.0.0.1\nlocaladdress=127.0.0.2\nLOCALADDRESS : 127.0.0.3\nLocalAddress:127.0.0.4\nLocalAddress\t=\t127.0.0.5",
			[]string{"--local-address=127.0.0.1", "--local-address=127.0.0.2", "--local-address=127.0.0.3", "--local-address=127.0.0.4", "--local-address=127.0.0.5"}},
		{"booleans true", "Daemonize yes\nTCPOnly ON\nSyslog true\nIgnoreTimestamps 1\nEphemeralKeys Yes",
			[]string{"--daemonize", "--tcp-only", "--syslog", "--ignore-timestamps", "--ephemeral-keys"}},
		{"booleans false omit the switch", "Daemonize no\nTCPOnly off\nSyslog FALSE\nIgnoreTimestamps 0", nil},
		{"rest of line values", "LogFile /var/log/my dns.log\nProviderName 2.dnscrypt-cert.x   \nClientKey /etc/k # not a comment",
			[]string{"--logfile=/var/log/my dns.log", "--provider-name=2.dnscrypt-cert.x", "--client-key=/etc/k # not a comment"}},
		{"word values take a comment", "LocalAddress 127.0.0.1:53 # listen here\nLogLevel 7 # debug\nTCPOnly yes # over Tor",
			[]string{"--local-address=127.0.0.1:53", "--loglevel=7", "--tcp-only"}},
		{"quoted provider key", "ProviderKey \"E801 B84E A606\"\nProviderKey E801:B84E",
			[]string{"--provider-key=E801 B84E A606", "--provider-key=E801:B84E"}},
		{"every 1.x property", "ClientKey /k\nEDNSPayloadSize 4096\nMaxActiveRequests 10\nPidFile /p\nResolverAddress 192.0.2.1:443\nResolverName r\nResolversList /l\nSyslogPrefix x\nTest 60\nUser u",
			[]string{"--client-key=/k", "--edns-payload-size=4096", "--max-active-requests=10", "--pidfile=/p", "--resolver-address=192.0.2.1:443",
				"--resolver-name=r", "--resolvers-list=/l", "--syslog-prefix=x", "--test=60", "--user=u"}},
		{"new properties", "Stamp sdns://AQ\nProxy socks5://127.0.0.1:9050\nTor yes\nIsolation query\nIsolationEpoch 5m\nOptimisticData yes\nNoEphemeralKeys yes",
			[]string{"--stamp=sdns://AQ", "--proxy=socks5://127.0.0.1:9050", "--tor", "--isolation=query", "--isolation-epoch=5m", "--optimistic-data", "--no-ephemeral-keys"}},
		{"several resolvers", "Stamp sdns://AQ\nStamp sdns://Aw\nResolverName a,b\nResolverAddress tls://192.0.2.1\nResolverAddress tcp://192.0.2.2 # plain\nSelection rotate\nHedge no\nHedgeOtherResolver yes",
			[]string{"--stamp=sdns://AQ", "--stamp=sdns://Aw", "--resolver-name=a,b", "--resolver-address=tls://192.0.2.1", "--resolver-address=tcp://192.0.2.2",
				"--selection=rotate", "--hedge=no", "--hedge-other-resolver=yes"}},
		{"plugin booleans off", "BlockIPv6 no\nLocalCache off\nLocalCache no min-ttl:60", nil},
		{"byte order mark", "\xef\xbb\xbfTCPOnly yes", []string{"--tcp-only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig(strings.NewReader(tt.in), "test.conf", memFiles(nil))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
			if _, err := ParseArgs(got); err != nil {
				t.Errorf("ParseArgs(%q): %v", got, err)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		code int
		msg  string
	}{
		{"unknown property", "# ok\nFoo bar", 1, "test.conf:2: unknown property [Foo]"},
		{"prefix of a property", "Daemon yes", 1, "unknown property [Daemon]"},
		{"property glued to its value", "Daemonizeyes", 1, "unknown property [Daemonizeyes]"},
		{"missing value", "LocalAddress", 1, "test.conf:1: LocalAddress needs a value"},
		{"missing value after separator", "LocalAddress =  ", 1, "LocalAddress needs a value"},
		{"bad boolean", "Daemonize maybe", 1, "Daemonize: [maybe] is not a boolean"},
		{"boolean with extra", "Daemonize yes please", 1, "Daemonize: unexpected [please] after [yes]"},
		{"bad number", "LogLevel high", 1, "LogLevel: [high] is not a number"},
		{"negative number", "EDNSPayloadSize -1", 1, "EDNSPayloadSize: [-1] is not a number"},
		{"space in a word", "LocalAddress 127.0.0.1 53", 1, "LocalAddress: unexpected [53]"},
		{"unterminated quote", "ProviderKey \"E801", 1, "ProviderKey: missing closing quote"},
		{"unquoted spaces in key", "ProviderKey E801 B84E", 1, "unexpected [B84E]"},
		{"control character", "LogFile /tmp/a\x00b", 1, "control character"},
		{"double separator", "LocalAddress == 127.0.0.1", 1, "unexpected"},
		{"no key", "= 1", 1, "syntax error"},
		{"include missing", "Include nosuch.conf", 1, "Unable to read the configuration file [nosuch.conf]: file does not exist"},
		{"plugin", "Plugin libdcplugin_example.so", 2, "test.conf:1: Plugin"},
		{"blacklist", "BlackList domains:/etc/bl.txt", 2, "BlackList"},
		{"query log", "QueryLogFile /tmp/q.log", 2, "QueryLogFile"},
		{"forward", "Forward domains:a to:b", 2, "Forward"},
		{"opendns ip", "OpenDNSIP 192.0.2.1", 2, "OpenDNSIP"},
		{"opendns password", "OpenDNSPasswordFile /p", 2, "OpenDNSPasswordFile"},
		{"block ipv6 on", "BlockIPv6 yes", 2, "BlockIPv6"},
		{"local cache on", "LocalCache on min-ttl:60", 2, "LocalCache"},
		{"block ipv6 bad", "BlockIPv6 perhaps", 1, "not a boolean"},
		{"windows service name", "ServiceName dnscrypt-proxy", 1, "ServiceName is not supported on this platform"},
		{"long line", "LogFile /" + strings.Repeat("a", maxConfigLine), 1, "line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig(strings.NewReader(tt.in), "test.conf", memFiles(nil))
			if err == nil {
				t.Fatalf("ParseConfig(%q) = %q, want an error", tt.in, got)
			}
			if code := exitCode(err); code != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("ParseConfig(%q): got exit %d %q, want exit %d %q", tt.in, code, err, tt.code, tt.msg)
			}
		})
	}
}

func TestParseConfigIncludeRelative(t *testing.T) {
	files := map[string]string{
		"/etc/dnscrypt/main.conf":     "Include sub/a.conf\nTCPOnly yes\nInclude /abs.conf\n",
		"/etc/dnscrypt/sub/a.conf":    "LogLevel 7\nInclude b.conf\n",
		"/etc/dnscrypt/sub/b.conf":    "LocalAddress 127.0.0.1:40\n",
		"/abs.conf":                   "Daemonize yes\n",
		"/etc/dnscrypt/deep/0.conf":   "",
		"/etc/dnscrypt/deep/bad.conf": "Include 0.conf\nBogus 1\n",
	}
	got, err := ParseConfig(nil, "/etc/dnscrypt/main.conf", memFiles(files))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--loglevel=7", "--local-address=127.0.0.1:40", "--tcp-only", "--daemonize"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	_, err = ParseConfig(nil, "/etc/dnscrypt/deep/bad.conf", memFiles(files))
	if err == nil || !strings.Contains(err.Error(), "/etc/dnscrypt/deep/bad.conf:2: unknown property [Bogus]") {
		t.Errorf("error in an including file: got %v", err)
	}
}

func TestParseConfigIncludeDepth(t *testing.T) {
	// A chain of exactly MaxIncludeDepth files works; one more does not.
	files := map[string]string{}
	for i := range MaxIncludeDepth + 1 {
		files[filepath.Join("/c", string(rune('a'+i))+".conf")] = "Include " + string(rune('a'+i+1)) + ".conf\n"
	}
	files[filepath.Join("/c", string(rune('a'+MaxIncludeDepth-1))+".conf")] = "TCPOnly yes\n"
	got, err := ParseConfig(nil, "/c/a.conf", memFiles(files))
	if err != nil || !reflect.DeepEqual(got, []string{"--tcp-only"}) {
		t.Errorf("%d levels: got %q, %v", MaxIncludeDepth, got, err)
	}
	files[filepath.Join("/c", string(rune('a'+MaxIncludeDepth-1))+".conf")] = "Include end.conf\n"
	files["/c/end.conf"] = "TCPOnly yes\n"
	if _, err := ParseConfig(nil, "/c/a.conf", memFiles(files)); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("%d levels: got %v, want an error", MaxIncludeDepth+1, err)
	}
}

func TestParseConfigLimits(t *testing.T) {
	big := strings.Repeat("# padding line of a big configuration file\n", MaxConfigSize/40)
	if _, err := ParseConfig(strings.NewReader(big), "big.conf", memFiles(nil)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: got %v", err)
	}
	if _, err := ReadConfigFile("testdata/nosuch.conf"); err == nil || exitCode(err) != 1 ||
		!strings.Contains(err.Error(), "Unable to read the configuration file [testdata/nosuch.conf]") {
		t.Errorf("missing file: got %v", err)
	}
}
