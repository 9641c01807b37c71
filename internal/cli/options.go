package cli

import (
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/names"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
)

// Options is the command line as given, checked for syntax and ranges but
// before any file is read or any name is looked up (see [Options.Plan]).
// A zero field means the option was not given; [Options.Given] tells
// apart an option given with its zero value.
type Options struct {
	LocalAddress      string   // -a, "ip[:port]"
	LocalPort         int      // -P, 1.0.x --local-port
	Daemonize         bool     // -d
	EDNSPayloadSize   int      // -e, 0..65508
	EphemeralKeys     bool     // -E, --ephemeral-keys[=BOOL], --no-ephemeral-keys
	ClientKeyFile     string   // -K
	ResolversList     string   // -L
	ResolverNames     []string // -R, each time given (a comma-separated list each)
	ProviderName      string   // -N
	ProviderKey       string   // -k
	ResolverAddresses []string // -r, each time given
	ResolverPort      int      // 1.0.x --resolver-port
	Stamps            []string // --stamp, repeatable
	TCPOnly           bool     // -T
	MaxActiveRequests int      // -n
	Test              bool     // -t given
	TestMargin        time.Duration
	IgnoreTimestamps  bool   // -I
	LogFile           string // -l
	LogLevel          int    // -m, 0..7
	Syslog            bool   // -S
	SyslogPrefix      string // -Z
	PidFile           string // -p, --pid-file
	User              string // -u

	Proxy          string          // --proxy=socks5://...
	Tor            bool            // --tor
	Isolation      proxy.Isolation // --isolation (zero is none: see Given)
	IsolationEpoch time.Duration   // --isolation-epoch
	Timeout        time.Duration   // --timeout
	OptimisticData bool            // --optimistic-data

	PrivateDomains   []string // --private-domain, repeatable
	RebindProtection bool     // --rebind-protection[=BOOL] (see Given)

	Selection  proxy.Selection // --selection (see Given)
	Hedge      bool            // --hedge[=BOOL] (see Given)
	HedgeOther bool            // --hedge-other-resolver[=BOOL] (see Given)

	Help    bool // -h: stop and print the usage
	Version bool // -V: stop and print the version

	// Args are the arguments that are not options, as [ParseArgs] found
	// them. [Parse] takes the one it may have as ConfigFile.
	Args []string
	// ConfigFile is the configuration file [Parse] read the options of
	// first, before the command line's ("" if none).
	ConfigFile string

	given map[string]bool
}

// Given reports whether the long option name (without dashes) was given.
func (o *Options) Given(name string) bool { return o.given[name] }

// Limits of numeric options, as in 1.x.
const (
	maxEDNSPayloadSize = 65508 // DNS_MAX_PACKET_SIZE_UDP_RECV
	maxTestMargin      = math.MaxUint32 / 60
	maxLogLevel        = 7
)

// option is one command-line option.
type option struct {
	long  string
	short byte   // 0: none
	arg   string // metavariable for the help; "" for a switch
	help  string
	// set stores the value; v is "true" or "false" for a switch.
	set    func(o *Options, v string) error
	hidden bool // not in --help (Windows-only options)
	alias  []string
	// noAbbrev: only the full name works (options 1.9.5 did not have).
	noAbbrev bool
}

// errStop ends parsing at -h or -V, as getopt-based 1.x does.
var errStop = errors.New("stop parsing")

var options = []option{
	{long: "resolver-name", short: 'R', arg: "NAME",
		help: "resolver from the resolvers list (-L); several as NAME1,NAME2,...; 'random', or 'random:N' for N distinct ones (DNSSEC, no logs, IPv4); default " + defaultResolverHelp,
		set:  func(o *Options, v string) error { o.ResolverNames = append(o.ResolverNames, v); return nil }},
	{long: "local-address", short: 'a', arg: "IP[:PORT]",
		help: "address to listen on, UDP and TCP (default 127.0.0.1:53; IPv6 in brackets)",
		set:  func(o *Options, v string) error { o.LocalAddress = v; return nil }},
	{long: "daemonize", short: 'd',
		help: "run in the background once serving; implies --syslog unless --logfile",
		set:  func(o *Options, v string) error { return setBool(&o.Daemonize, "daemonize", v) }},
	{long: "ephemeral-keys", short: 'E', arg: "",
		help: "a new key pair for every query (default on with --tor/--proxy; =false turns it off)",
		set:  func(o *Options, v string) error { return setBool(&o.EphemeralKeys, "ephemeral-keys", v) }},
	{long: "no-ephemeral-keys", noAbbrev: true,
		help: "same as --ephemeral-keys=false",
		set: func(o *Options, v string) error {
			var b bool
			if err := setBool(&b, "no-ephemeral-keys", v); err != nil {
				return err
			}
			o.EphemeralKeys = !b
			o.given["ephemeral-keys"] = true
			return nil
		}},
	{long: "client-key", short: 'K', arg: "FILE",
		help: "static client secret key: hex, 68 digits (01 01 + key, 1.x format) or 64 digits (bare key); ':', ' ', '-' between bytes ignored",
		set:  func(o *Options, v string) error { o.ClientKeyFile = v; return nil }},
	{long: "resolvers-list", short: 'L', arg: "FILE",
		help: "resolvers list in the 1.x CSV format, for -R (default: built-in list)",
		set:  func(o *Options, v string) error { o.ResolversList = v; return nil }},
	{long: "logfile", short: 'l', arg: "FILE",
		help: "append the log to FILE (reopened on SIGHUP) instead of stdout/stderr",
		set:  func(o *Options, v string) error { o.LogFile = v; return nil }},
	{long: "loglevel", short: 'm', arg: "LEVEL",
		help: "log priorities up to LEVEL, 0 (emergencies) to 7 (debug); default 6",
		set:  setLogLevel},
	{long: "pidfile", short: 'p', arg: "FILE", alias: []string{"pid-file"},
		help: "write the PID of the serving process to FILE; removed on exit",
		set:  func(o *Options, v string) error { o.PidFile = v; return nil }},
	{long: "plugin", short: 'X', arg: "LIB[,ARGS]",
		help: "not supported: this proxy has no plugins",
		set:  func(o *Options, v string) error { return pluginError("--plugin=" + v) }},
	{long: "provider-name", short: 'N', arg: "NAME",
		help: "provider (certificate) name, e.g. 2.dnscrypt-cert.example.com",
		set:  func(o *Options, v string) error { o.ProviderName = v; return nil }},
	{long: "provider-key", short: 'k', arg: "KEY",
		help: "provider public key, 64 hex digits (e.g. E801:B84E:...:324D)",
		set:  func(o *Options, v string) error { o.ProviderKey = v; return nil }},
	{long: "resolver-address", short: 'r', arg: "IP[:PORT]",
		help: "resolver address (port 443 by default); overrides the list's; with --proxy/--tor also HOST[:PORT]. Other kinds of resolvers: tcp://IP[:PORT] (plain DNS over TCP), tls://IP[:PORT] (DNS-over-TLS), https://IP[:PORT][/PATH] (DNS-over-HTTPS); a host name instead of IP through --proxy/--tor; these may be repeated",
		set:  func(o *Options, v string) error { o.ResolverAddresses = append(o.ResolverAddresses, v); return nil }},
	{long: "syslog", short: 'S',
		help: "log to syslog (daemon facility)",
		set:  func(o *Options, v string) error { return setBool(&o.Syslog, "syslog", v) }},
	{long: "syslog-prefix", short: 'Z', arg: "PREFIX",
		help: "prefix every log line with PREFIX",
		set:  func(o *Options, v string) error { o.SyslogPrefix = v; return nil }},
	{long: "max-active-requests", short: 'n', arg: "COUNT",
		help: "queries in flight at most; the oldest is dropped beyond (default 250)",
		set:  setMaxActiveRequests},
	{long: "user", short: 'u', arg: "USER",
		help: "drop privileges to USER once the sockets are bound (no chroot, unlike 1.x)",
		set:  func(o *Options, v string) error { o.User = v; return nil }},
	{long: "test", short: 't', arg: "MARGIN",
		help: "only check the certificate, valid for MARGIN more minutes; exit 0, 2 (none valid), 3 (no answer), 4 (ends within the margin)",
		set:  setTest},
	{long: "tcp-only", short: 'T',
		help: "answer UDP clients with TC=1 and use TCP upstream (certificates included)",
		set:  func(o *Options, v string) error { return setBool(&o.TCPOnly, "tcp-only", v) }},
	{long: "edns-payload-size", short: 'e', arg: "BYTES",
		help: "EDNS payload size sent upstream (default 1252; 512 or less disables the rewrite)",
		set:  setEDNSPayloadSize},
	{long: "ignore-timestamps", short: 'I',
		help: "accept certificates that are not valid yet (expired ones are still refused)",
		set:  func(o *Options, v string) error { return setBool(&o.IgnoreTimestamps, "ignore-timestamps", v) }},
	{long: "version", short: 'V',
		help: "print the version and exit",
		set:  func(o *Options, v string) error { o.Version = true; return errStop }},
	{long: "help", short: 'h',
		help: "print this help and exit",
		set:  func(o *Options, v string) error { o.Help = true; return errStop }},

	// New in this proxy.
	{long: "stamp", noAbbrev: true, arg: "SDNS",
		help: "resolver as a DNS stamp, sdns://...: DNSCrypt, plain DNS (asked over TCP), DNS-over-TLS or DNS-over-HTTPS; repeatable",
		set:  func(o *Options, v string) error { o.Stamps = append(o.Stamps, v); return nil }},
	{long: "selection", noAbbrev: true, arg: "MODE",
		help: "with several resolvers, how a query's resolver is chosen: rotate (a resolver per isolation epoch, another than the last; default with --proxy/--tor) or fastest (the fastest healthy ones; default directly)",
		set:  setSelection},
	{long: "hedge", noAbbrev: true, arg: "",
		help: "ask a late query once more, through --proxy/--tor over another circuit (default on with several resolvers; with one, =yes asks it again)",
		set:  func(o *Options, v string) error { return setBool(&o.Hedge, "hedge", v) }},
	{long: "hedge-other-resolver", noAbbrev: true, arg: "",
		help: "hedge to another resolver rather than the same one (default on directly, off with --proxy/--tor: through Tor a second resolver would see the query)",
		set:  func(o *Options, v string) error { return setBool(&o.HedgeOther, "hedge-other-resolver", v) }},
	{long: "proxy", noAbbrev: true, arg: "URL",
		help: "send everything through this SOCKS5 proxy: socks5://[USER:PASS@]IP:PORT or socks5:///SOCKET/PATH; USER:PASS is an account, sent as given (no circuit isolation then)",
		set:  func(o *Options, v string) error { o.Proxy = v; return nil }},
	{long: "tor", noAbbrev: true,
		help: "send everything through Tor (--proxy=socks5://127.0.0.1:9050 unless --proxy is given)",
		set:  func(o *Options, v string) error { return setBool(&o.Tor, "tor", v) }},
	{long: "isolation", noAbbrev: true, arg: "MODE",
		help: "with a proxy: none, epoch (default: new circuit and key every --isolation-epoch) or query",
		set:  setIsolation},
	{long: "isolation-epoch", noAbbrev: true, arg: "DURATION",
		help: "length of an isolation epoch (default 10m)",
		set:  setIsolationEpoch},
	{long: "timeout", noAbbrev: true, arg: "DURATION",
		help: "give up on a query after DURATION and answer SERVFAIL (default 10s, 20s with a proxy)",
		set:  setTimeout},
	{long: "optimistic-data", noAbbrev: true,
		help: "send the query right after the SOCKS CONNECT request, before its reply (off: never faster through Tor, see README)",
		set:  func(o *Options, v string) error { return setBool(&o.OptimisticData, "optimistic-data", v) }},

	{long: "private-domain", noAbbrev: true, arg: "DOMAIN",
		help: "send DOMAIN (and names under it) upstream even if it is a special-use name answered locally (.local, .internal, a private reverse zone, ...), and keep internal addresses in its answers; repeatable, or comma-separated",
		set:  setPrivateDomain},
	{long: "rebind-protection", noAbbrev: true, arg: "",
		help: "remove internal addresses (private, loopback, link-local, ...) from answers to other names (default on with --proxy/--tor; =no turns it off)",
		set:  func(o *Options, v string) error { return setBool(&o.RebindProtection, "rebind-protection", v) }},
	{long: "no-rebind-protection", noAbbrev: true,
		help: "same as --rebind-protection=no",
		set: func(o *Options, v string) error {
			var b bool
			if err := setBool(&b, "no-rebind-protection", v); err != nil {
				return err
			}
			o.RebindProtection = !b
			o.given["rebind-protection"] = true
			return nil
		}},

	// dnscrypt-proxy 1.0.x.
	{long: "local-port", noAbbrev: true, short: 'P', arg: "PORT",
		help: "1.0.x: port to listen on (with -a IP, or on 127.0.0.1)",
		set:  func(o *Options, v string) error { return setPort(&o.LocalPort, "local port", v) }},
	{long: "resolver-port", noAbbrev: true, arg: "PORT",
		help: "1.0.x: port of the resolver address",
		set:  func(o *Options, v string) error { return setPort(&o.ResolverPort, "resolver port", v) }},

	// Windows only in 1.x.
	windowsOption("install", ""),
	windowsOption("install-with-config-file", "FILE"),
	windowsOption("reinstall", ""),
	windowsOption("reinstall-with-config-file", "FILE"),
	windowsOption("uninstall", ""),
	windowsOption("service-name", "NAME"),
}

const defaultResolverHelp = "the built-in '" + defaultResolverName + "'"

func windowsOption(name, arg string) option {
	return option{long: name, arg: arg, hidden: true, noAbbrev: true,
		set: func(o *Options, v string) error { return platformError("--" + name) }}
}

// switches accept these values after '=' (getopt does not; they are here
// for --ephemeral-keys=false and config-like scripts).
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true, true
	case "0", "false", "no", "off":
		return false, true
	}
	return false, false
}

func setBool(dst *bool, name, v string) error {
	b, ok := parseBool(v)
	if !ok {
		return valueErrorf("Invalid value for --%s: [%s] (want true or false)", name, v)
	}
	*dst = b
	return nil
}

// parseDecimal parses what 1.x's strtoul(s, &end, 10) with the checks
// "*s != 0 && *end == 0" accepts, without its sign and space quirks:
// decimal digits only.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

func setEDNSPayloadSize(o *Options, v string) error {
	n, ok := parseDecimal(v)
	if !ok || n > maxEDNSPayloadSize {
		return valueErrorf("Invalid EDNS payload size: [%s] (want 0..%d)", v, maxEDNSPayloadSize)
	}
	o.EDNSPayloadSize = int(n)
	return nil
}

func setMaxActiveRequests(o *Options, v string) error {
	n, ok := parseDecimal(v)
	if !ok || n == 0 || n > math.MaxUint32 {
		return valueErrorf("Invalid max number of active request: [%s] (want 1..%d)", v, uint64(math.MaxUint32))
	}
	o.MaxActiveRequests = int(n)
	return nil
}

// setLogLevel takes a syslog priority, 0..7. 1.x also took larger
// numbers, meaning 7; they are refused, as a typo may hide behind them.
func setLogLevel(o *Options, v string) error {
	n, ok := parseDecimal(v)
	if !ok || n > maxLogLevel {
		return valueErrorf("Invalid max log level: [%s] (want 0..%d)", v, maxLogLevel)
	}
	o.LogLevel = int(n)
	return nil
}

func setTest(o *Options, v string) error {
	n, ok := parseDecimal(v)
	if !ok || n > maxTestMargin {
		return valueErrorf("Invalid certificate grace period: [%s] (want 0..%d minutes)", v, uint64(maxTestMargin))
	}
	o.Test = true
	o.TestMargin = time.Duration(n) * time.Minute
	return nil
}

func setPort(dst *int, what, v string) error {
	n, ok := parseDecimal(v)
	if !ok || n == 0 || n > 65535 {
		return valueErrorf("Invalid %s: [%s] (want 1..65535)", what, v)
	}
	*dst = int(n)
	return nil
}

func setIsolation(o *Options, v string) error {
	iso, err := proxy.ParseIsolation(v)
	if err != nil {
		return valueErrorf("Invalid isolation: [%s] (want none, epoch or query)", v)
	}
	o.Isolation = iso
	return nil
}

func setIsolationEpoch(o *Options, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return valueErrorf("Invalid isolation epoch: [%s] (want a positive duration such as 10m or 1h30m)", v)
	}
	if d < time.Second {
		return valueErrorf("Invalid isolation epoch: [%s] (at least 1s)", v)
	}
	o.IsolationEpoch = d
	return nil
}

func setSelection(o *Options, v string) error {
	sel, err := proxy.ParseSelection(v)
	if err != nil {
		return valueErrorf("Invalid selection: [%s] (want rotate or fastest)", v)
	}
	o.Selection = sel
	return nil
}

func setPrivateDomain(o *Options, v string) error {
	for d := range strings.SplitSeq(v, ",") {
		d = strings.TrimSpace(d)
		if _, err := names.New(names.Config{Forward: []string{d}}); err != nil {
			return valueErrorf("Invalid private domain: [%s] (want a domain name such as corp.internal)", d)
		}
		o.PrivateDomains = append(o.PrivateDomains, d)
	}
	return nil
}

func setTimeout(o *Options, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 100*time.Millisecond || d > 10*time.Minute {
		return valueErrorf("Invalid timeout: [%s] (want a duration from 100ms to 10m, such as 5s)", v)
	}
	o.Timeout = d
	return nil
}

// optionValue adapts an option to pflag.
type optionValue struct {
	opt *option
	o   *Options
}

func (v optionValue) String() string { return "" }
func (v optionValue) Type() string {
	if v.opt.arg == "" {
		return "bool"
	}
	return "string"
}
func (v optionValue) Set(s string) error {
	if err := v.opt.set(v.o, s); err != nil {
		return err
	}
	v.o.given[v.opt.long] = true
	return nil
}

// lookupLong returns the option named name or one of its aliases, or
// else the only option whose name starts with name (getopt_long accepts
// unambiguous abbreviations; only the options of 1.x take part). When
// name abbreviates several options it returns their names.
func lookupLong(name string) (*option, []string) {
	if name == "" {
		return nil, nil
	}
	for i := range options {
		if options[i].long == name || slices.Contains(options[i].alias, name) {
			return &options[i], nil
		}
	}
	var matches []*option
	var names []string
	for i := range options {
		opt := &options[i]
		if opt.noAbbrev {
			continue
		}
		for _, n := range append([]string{opt.long}, opt.alias...) {
			if strings.HasPrefix(n, name) {
				matches = append(matches, opt)
				names = append(names, "--"+n)
				break
			}
		}
	}
	if len(matches) == 1 {
		return matches[0], nil
	}
	return nil, names
}

// ParseArgs parses the command-line arguments (without the program name)
// by the rules of GNU getopt_long, as dnscrypt-proxy 1.x did: "--opt=v",
// "--opt v", "-o v", "-ov", bundled switches ("-dT"), options after
// non-options, "--" ending the options, and unambiguous abbreviations of
// long options ("--daemon"). Parsing stops at -h or -V, as in 1.x.
//
// Errors are [*ExitError]s.
func ParseArgs(args []string) (*Options, error) {
	o := &Options{given: make(map[string]bool)}
	if err := o.parseArgs(args); err != nil {
		return nil, err
	}
	return o, nil
}

// parseArgs is ParseArgs on top of the options o already holds: an option
// given in args replaces o's value. Its arguments that are not options
// are appended to o.Args.
func (o *Options) parseArgs(args []string) error {
	fs := pflag.NewFlagSet("dnscrypt-proxy", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	fs.SetInterspersed(true)
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if opt, _ := lookupLong(name); opt != nil {
			return pflag.NormalizedName(opt.long)
		}
		return pflag.NormalizedName(name)
	})
	for i := range options {
		opt := &options[i]
		var short string
		if opt.short != 0 {
			short = string(opt.short)
		}
		f := fs.VarPF(optionValue{opt, o}, opt.long, short, opt.help)
		if opt.arg == "" {
			f.NoOptDefVal = "true"
		}
	}
	err := fs.Parse(args)
	if errors.Is(err, errStop) {
		return nil
	}
	if err != nil {
		return translateParseError(err)
	}
	o.Args = append(o.Args, fs.Args()...)
	return nil
}

// translateParseError turns pflag's errors into getopt-like messages.
func translateParseError(err error) error {
	if ee, ok := errors.AsType[*ExitError](err); ok {
		return ee
	}
	if ne, ok := errors.AsType[*pflag.NotExistError](err); ok {
		if sh := ne.GetSpecifiedShortnames(); sh != "" {
			return usageErrorf("invalid option -- '%s'", ne.GetSpecifiedName())
		}
		name := ne.GetSpecifiedName()
		if _, cands := lookupLong(name); len(cands) > 1 {
			return usageErrorf("option '--%s' is ambiguous; possibilities: %s", name, strings.Join(cands, " "))
		}
		return usageErrorf("unrecognized option '--%s'", name)
	}
	if ve, ok := errors.AsType[*pflag.ValueRequiredError](err); ok {
		if sh := ve.GetSpecifiedShortnames(); sh != "" {
			return usageErrorf("option requires an argument -- '%s'", ve.GetSpecifiedName())
		}
		name := ve.GetSpecifiedName()
		if opt, _ := lookupLong(name); opt != nil {
			name = opt.long
		}
		return usageErrorf("option '--%s' requires an argument", name)
	}
	if se, ok := errors.AsType[*pflag.InvalidSyntaxError](err); ok {
		return usageErrorf("invalid option syntax: '%s'", se.GetSpecifiedFlag())
	}
	return usageErrorf("%v", err)
}
