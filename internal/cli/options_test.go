package cli

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
)

// opts builds the Options ParseArgs should return; given lists the long
// options given.
func opts(o Options, given ...string) *Options {
	o.given = map[string]bool{}
	for _, g := range given {
		o.given[g] = true
	}
	return &o
}

func TestParseArgsForms(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want *Options
	}{
		{"empty", nil, opts(Options{})},
		{"long equals", []string{"--local-address=127.0.0.1:5353"}, opts(Options{LocalAddress: "127.0.0.1:5353"}, "local-address")},
		{"long space", []string{"--local-address", "127.0.0.1:5353"}, opts(Options{LocalAddress: "127.0.0.1:5353"}, "local-address")},
		{"short space", []string{"-a", "127.0.0.1:5353"}, opts(Options{LocalAddress: "127.0.0.1:5353"}, "local-address")},
		{"short attached", []string{"-a127.0.0.1:5353"}, opts(Options{LocalAddress: "127.0.0.1:5353"}, "local-address")},
		{"bundled switches", []string{"-dT"}, opts(Options{Daemonize: true, TCPOnly: true}, "daemonize", "tcp-only")},
		{"bundled switch then value", []string{"-Ta", "[::1]:53"}, opts(Options{TCPOnly: true, LocalAddress: "[::1]:53"}, "tcp-only", "local-address")},
		{"bundled switch then attached value", []string{"-dIe4096"}, opts(Options{Daemonize: true, IgnoreTimestamps: true, EDNSPayloadSize: 4096}, "daemonize", "ignore-timestamps", "edns-payload-size")},
		{"permutation", []string{"extra", "-T", "more", "--loglevel=7"}, opts(Options{TCPOnly: true, LogLevel: 7, Args: []string{"extra", "more"}}, "tcp-only", "loglevel")},
		{"double dash ends options", []string{"-T", "--", "-d"}, opts(Options{TCPOnly: true, Args: []string{"-d"}}, "tcp-only")},
		{"value starting with dash", []string{"-Z", "-x-", "--syslog-prefix", "--y"}, opts(Options{SyslogPrefix: "--y"}, "syslog-prefix")},
		{"last one wins", []string{"-a", "127.0.0.2", "--local-address=127.0.0.3"}, opts(Options{LocalAddress: "127.0.0.3"}, "local-address")},
		{"abbreviation", []string{"--daemon", "--tcp", "--local-addr=10.0.0.1", "--pid=/run/p"}, opts(Options{Daemonize: true, TCPOnly: true, LocalAddress: "10.0.0.1", PidFile: "/run/p"}, "daemonize", "tcp-only", "local-address", "pidfile")},
		{"pid-file alias", []string{"--pid-file=/run/x.pid"}, opts(Options{PidFile: "/run/x.pid"}, "pidfile")},
		{"pidfile short", []string{"-p/run/x.pid"}, opts(Options{PidFile: "/run/x.pid"}, "pidfile")},
		{"every 1.x value option", []string{
			"-R", "name", "-a", "127.0.0.1", "-e", "4096", "-K", "/k", "-L", "/l.csv", "-l", "/log",
			"-m", "7", "-N", "2.dnscrypt-cert.x", "-k", "AB:CD", "-r", "192.0.2.1", "-Z", "pfx",
			"-n", "100", "-u", "nobody", "-t", "60", "-p", "/pid"},
			opts(Options{ResolverNames: []string{"name"}, LocalAddress: "127.0.0.1", EDNSPayloadSize: 4096, ClientKeyFile: "/k",
				ResolversList: "/l.csv", LogFile: "/log", LogLevel: 7, ProviderName: "2.dnscrypt-cert.x",
				ProviderKey: "AB:CD", ResolverAddresses: []string{"192.0.2.1"}, SyslogPrefix: "pfx", MaxActiveRequests: 100,
				User: "nobody", Test: true, TestMargin: time.Hour, PidFile: "/pid"},
				"resolver-name", "local-address", "edns-payload-size", "client-key", "resolvers-list", "logfile",
				"loglevel", "provider-name", "provider-key", "resolver-address", "syslog-prefix",
				"max-active-requests", "user", "test", "pidfile")},
		{"every 1.x switch", []string{"-d", "-E", "-S", "-T", "-I"},
			opts(Options{Daemonize: true, EphemeralKeys: true, Syslog: true, TCPOnly: true, IgnoreTimestamps: true},
				"daemonize", "ephemeral-keys", "syslog", "tcp-only", "ignore-timestamps")},
		{"whonix", []string{"--tcp-only", "--daemonize", "--user=dnscrypt", "--local-port=5800"},
			opts(Options{TCPOnly: true, Daemonize: true, User: "dnscrypt", LocalPort: 5800}, "tcp-only", "daemonize", "user", "local-port")},
		{"1.0 ports", []string{"-P", "5353", "--resolver-port=5443"}, opts(Options{LocalPort: 5353, ResolverPort: 5443}, "local-port", "resolver-port")},
		{"switch with value", []string{"--ephemeral-keys=false", "--tcp-only=yes"}, opts(Options{TCPOnly: true}, "ephemeral-keys", "tcp-only")},
		{"no-ephemeral-keys", []string{"-E", "--no-ephemeral-keys"}, opts(Options{}, "ephemeral-keys", "no-ephemeral-keys")},
		{"tor options", []string{"--tor", "--proxy=socks5://127.0.0.1:9150", "--isolation=query", "--isolation-epoch=1h30m", "--optimistic-data", "--stamp=sdns://x"},
			opts(Options{Tor: true, Proxy: "socks5://127.0.0.1:9150", Isolation: proxy.IsolationQuery, IsolationEpoch: 90 * time.Minute, OptimisticData: true, Stamps: []string{"sdns://x"}},
				"tor", "proxy", "isolation", "isolation-epoch", "optimistic-data", "stamp")},
		{"several resolvers", []string{"--stamp=sdns://a", "--stamp", "sdns://b", "-r", "tls://192.0.2.1", "-rtcp://192.0.2.2", "-R", "a,b"},
			opts(Options{Stamps: []string{"sdns://a", "sdns://b"}, ResolverAddresses: []string{"tls://192.0.2.1", "tcp://192.0.2.2"}, ResolverNames: []string{"a,b"}},
				"stamp", "resolver-address", "resolver-name")},
		{"each -R kept", []string{"-R", "a", "--resolver-name=b"}, opts(Options{ResolverNames: []string{"a", "b"}}, "resolver-name")},
		{"set options", []string{"--selection=fastest", "--hedge", "--hedge-other-resolver=no"},
			opts(Options{Selection: proxy.SelectFastest, Hedge: true}, "selection", "hedge", "hedge-other-resolver")},
		{"set options off", []string{"--selection", "rotate", "--hedge=false", "--hedge-other-resolver"},
			opts(Options{Selection: proxy.SelectRotate, HedgeOther: true}, "selection", "hedge", "hedge-other-resolver")},
		{"timeout", []string{"--timeout=2s500ms"}, opts(Options{Timeout: 2500 * time.Millisecond}, "timeout")},
		{"test zero", []string{"--test=0"}, opts(Options{Test: true}, "test")},
		{"edns zero", []string{"-e0"}, opts(Options{}, "edns-payload-size")},
		{"help stops", []string{"-T", "-h", "--bogus"}, opts(Options{TCPOnly: true, Help: true}, "tcp-only")},
		{"version stops", []string{"-V", "-X", "plugin"}, opts(Options{Version: true})},
		{"help bundled", []string{"-Th"}, opts(Options{TCPOnly: true, Help: true}, "tcp-only")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgs(tt.args)
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseArgs(%q)\n got %+v\nwant %+v", tt.args, *got, *tt.want)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
		hint bool
	}{
		{[]string{"--bogus"}, 1, "unrecognized option '--bogus'", true},
		{[]string{"--bogus=1"}, 1, "unrecognized option '--bogus'", true},
		{[]string{"-x"}, 1, "invalid option -- 'x'", true},
		{[]string{"-Tx"}, 1, "invalid option -- 'x'", true},
		{[]string{"-a"}, 1, "option requires an argument -- 'a'", true},
		{[]string{"-Ta"}, 1, "option requires an argument -- 'a'", true},
		{[]string{"--local-address"}, 1, "option '--local-address' requires an argument", true},
		{[]string{"--local-a"}, 1, "option '--local-address' requires an argument", true},
		{[]string{"--re=x"}, 1, "option '--re' is ambiguous; possibilities: --resolver-name --resolvers-list --resolver-address", true},
		{[]string{"--tor-x"}, 1, "unrecognized option '--tor-x'", true},
		{[]string{"--to"}, 1, "unrecognized option '--to'", true}, // new options have no abbreviation
		{[]string{"---x"}, 1, "invalid option syntax: '---x'", true},
		{[]string{"--=x"}, 1, "invalid option syntax: '--=x'", true},
		{[]string{"-e", "abc"}, 1, "Invalid EDNS payload size: [abc]", false},
		{[]string{"-e", "65509"}, 1, "Invalid EDNS payload size: [65509]", false},
		{[]string{"-e", "-1"}, 1, "Invalid EDNS payload size: [-1]", false},
		{[]string{"-e", " 1"}, 1, "Invalid EDNS payload size: [ 1]", false},
		{[]string{"-n", "0"}, 1, "Invalid max number of active request: [0]", false},
		{[]string{"-n", "4294967296"}, 1, "Invalid max number of active request: [4294967296]", false},
		{[]string{"-n", "99999999999999999999999"}, 1, "Invalid max number of active request", false},
		{[]string{"-m", "-1"}, 1, "Invalid max log level: [-1]", false},
		{[]string{"-m", ""}, 1, "Invalid max log level: []", false},
		{[]string{"-m", "8"}, 1, "Invalid max log level: [8] (want 0..7)", false}, // 1.x: same as 7
		{[]string{"--loglevel=99"}, 1, "Invalid max log level: [99] (want 0..7)", false},
		{[]string{"-t", "x"}, 1, "Invalid certificate grace period: [x]", false},
		{[]string{"-t", "71582789"}, 1, "Invalid certificate grace period: [71582789]", false},
		{[]string{"-P", "0"}, 1, "Invalid local port: [0]", false},
		{[]string{"-P", "65536"}, 1, "Invalid local port: [65536]", false},
		{[]string{"--resolver-port=x"}, 1, "Invalid resolver port: [x]", false},
		{[]string{"--isolation=circuit"}, 1, "Invalid isolation: [circuit]", false},
		{[]string{"--isolation-epoch=10"}, 1, "Invalid isolation epoch: [10]", false},
		{[]string{"--isolation-epoch=-1m"}, 1, "Invalid isolation epoch: [-1m]", false},
		{[]string{"--isolation-epoch=10ms"}, 1, "Invalid isolation epoch: [10ms] (at least 1s)", false},
		{[]string{"--timeout=5"}, 1, "Invalid timeout: [5]", false},
		{[]string{"--timeout=1ms"}, 1, "Invalid timeout: [1ms]", false},
		{[]string{"--tcp-only=maybe"}, 1, "Invalid value for --tcp-only: [maybe]", false},
		{[]string{"--selection=random"}, 1, "Invalid selection: [random] (want rotate or fastest)", false},
		{[]string{"--selection=auto"}, 1, "Invalid selection: [auto]", false},
		{[]string{"--selection"}, 1, "option '--selection' requires an argument", true},
		{[]string{"--hedge=maybe"}, 1, "Invalid value for --hedge: [maybe]", false},
		{[]string{"--hedge-other-resolver=2"}, 1, "Invalid value for --hedge-other-resolver: [2]", false},
		{[]string{"--hedge-o"}, 1, "unrecognized option '--hedge-o'", true},
		{[]string{"-X", "libdcplugin_example.so"}, 2, "Plugins are not supported", false},
		{[]string{"--plugin=x,--a=b"}, 2, "Plugins are not supported", false},
		{[]string{"--install"}, 1, "--install is not supported on this platform", false},
		{[]string{"--service-name=x"}, 1, "--service-name is not supported on this platform", false},
		{[]string{"--uninstall"}, 1, "--uninstall is not supported on this platform", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := ParseArgs(tt.args)
			if err == nil {
				t.Fatalf("ParseArgs(%q) = %+v, want an error", tt.args, o)
			}
			ee, ok := errors.AsType[*ExitError](err)
			if !ok {
				t.Fatalf("ParseArgs(%q): %T %v, want an *ExitError", tt.args, err, err)
			}
			if ee.Code != tt.code || !strings.Contains(ee.Msg, tt.msg) || ee.Hint != tt.hint {
				t.Errorf("ParseArgs(%q): got code %d hint %v %q, want code %d hint %v %q", tt.args, ee.Code, ee.Hint, ee.Msg, tt.code, tt.hint, tt.msg)
			}
		})
	}
}

func TestErrorSentinels(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want error
	}{
		{[]string{"--bogus"}, ErrUsage},
		{[]string{"-e", "x"}, ErrUsage},
		{[]string{"-X", "p"}, ErrPlugins},
		{[]string{"--install"}, ErrPlatform},
	} {
		_, err := ParseArgs(tt.args)
		if !errors.Is(err, tt.want) {
			t.Errorf("ParseArgs(%q): got %v, want %v", tt.args, err, tt.want)
		}
	}
}

func TestLookupLong(t *testing.T) {
	for _, tt := range []struct {
		name  string
		want  string
		cands int
	}{
		{"daemonize", "daemonize", 0},
		{"d", "daemonize", 0},
		{"pid", "pidfile", 0}, // pidfile and its alias pid-file: one option
		{"pid-", "pidfile", 0},
		{"local", "local-address", 0}, // -P/--local-port is not abbreviated, as in 1.9.5
		{"s", "", 2},                  // syslog, syslog-prefix
		{"syslog", "syslog", 0},       // exact wins over syslog-prefix
		{"t", "", 2},                  // tcp-only, test
		{"tor", "tor", 0},
		{"", "", 0},
		{"nosuch", "", 0},
	} {
		opt, cands := lookupLong(tt.name)
		got := ""
		if opt != nil {
			got = opt.long
		}
		if got != tt.want || len(cands) != tt.cands {
			t.Errorf("lookupLong(%q): got %q %q, want %q and %d candidates", tt.name, got, cands, tt.want, tt.cands)
		}
	}
}

func TestOptionTable(t *testing.T) {
	longs, shorts := map[string]bool{}, map[byte]bool{}
	for _, opt := range options {
		if longs[opt.long] {
			t.Errorf("option --%s defined twice", opt.long)
		}
		longs[opt.long] = true
		if opt.short != 0 {
			if shorts[opt.short] {
				t.Errorf("short option -%c defined twice", opt.short)
			}
			shorts[opt.short] = true
		}
		if opt.help == "" && !opt.hidden {
			t.Errorf("option --%s has no help", opt.long)
		}
	}
	// 1.9.5's getopt string: a:de:EhIk:K:L:l:m:n:p:r:R:St:u:N:TVX:Z:
	for _, c := range "a:de:EhIk:K:L:l:m:n:p:r:R:St:u:N:TVX:Z:" {
		if c != ':' && !shorts[byte(c)] {
			t.Errorf("1.x short option -%c missing", c)
		}
	}
	for _, p := range properties {
		if p.opt != "" && !longs[p.opt] {
			t.Errorf("property %s maps to unknown option --%s", p.key, p.opt)
		}
	}
}
