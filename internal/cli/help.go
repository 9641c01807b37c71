package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the version printed by -V and logged at start. Release
// builds set it with -ldflags "-X github.com/tor-dnscrypt/dnscrypt-proxy/internal/cli.Version=...".
var Version = "1.10.0-dev"

// writeVersion prints the -V block, laid out as in 1.x: the name and
// version, a blank line, then one line per build property.
func writeVersion(w io.Writer) {
	fmt.Fprintf(w, "dnscrypt-proxy %s\n\n", Version)
	fmt.Fprintf(w, "Go version: %s (%s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, when, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
		if rev != "" {
			fmt.Fprintf(w, "Source revision: %s%s %s\n", rev, modified, when)
		}
	}
	fmt.Fprintln(w, "Features: DNSCrypt es 1, es 2, DNS over TCP, DNS-over-TLS, DNS-over-HTTPS, SOCKS5/Tor")
	fmt.Fprintln(w, "Support for systemd socket activation: present")
	fmt.Fprintln(w, "Support for the XChaCha20-Poly1305 cipher: present")
	fmt.Fprintln(w, "Support for plugins: absent")
}

// writeUsage prints the -h text: the version block, then one line per
// option as 1.x did ("  -a\t--local-address=..."), with a description.
func writeUsage(w io.Writer) {
	writeVersion(w)
	fmt.Fprint(w, "\nUsage: dnscrypt-proxy [OPTION]... [CONFIG-FILE] [OPTION]...\n\nOptions:\n\n")
	for i := range options {
		opt := &options[i]
		if opt.hidden {
			continue
		}
		short := "    "
		if opt.short != 0 {
			short = "  -" + string(opt.short)
		}
		long := "--" + opt.long
		if opt.arg != "" {
			long += "=" + opt.arg
		}
		fmt.Fprintf(w, "%s\t%-32s %s\n", short, long, opt.help)
		for _, a := range opt.alias {
			fmt.Fprintf(w, "    \t%-32s same as --%s\n", "--"+a+"="+opt.arg, opt.long)
		}
	}
	fmt.Fprint(w, strings.Replace(usageNotes, "{timeout}", DaemonReadyTimeout.String(), 1))
}

const usageNotes = `
Notes:
  CONFIG-FILE is a file in the 1.x format (one "Property value" per line,
  e.g. "LocalAddress 127.0.0.1:5353", "TCPOnly yes", "Include FILE"). It may
  come alone or with options before or after it: the file is read first,
  then the options, whose values replace the file's. At most one file: any
  other argument that is not an option is an error. New properties: Stamp,
  Proxy, Tor, Isolation, IsolationEpoch, OptimisticData, NoEphemeralKeys,
  PrivateDomain (repeatable), RebindProtection (yes or no), Selection,
  Hedge and HedgeOtherResolver (yes or no). An option given on the command
  line replaces all of the file's values of that option.
  Several resolvers: repeat --stamp, give -R NAME1,NAME2,... or
  -R random:N (N distinct ones by the rules of -R random), repeat
  --resolver-address with tcp://, tls:// or https:// addresses, or mix
  them (each resolver once; in the file: Stamp and ResolverAddress
  repeated, ResolverName NAME1,NAME2). The 1.x form -r IP -N NAME -k KEY
  is one resolver: a second plain -r is an error, and a plain -r (or
  --resolver-port) beside --stamp or -R sets the address of their one
  DNSCrypt resolver. -R is given once. Through --proxy/--tor each
  isolation epoch picks its resolver afresh (rotate); directly the
  fastest ones get the queries (fastest). A late query is asked once more
  (--hedge): through --proxy/--tor of the same resolver over another
  circuit, which shows it nothing new; --hedge-other-resolver asks
  another resolver instead, which then sees that query too.
  With several resolvers --test checks each DNSCrypt one and exits with
  the worst status: 2, then 3, then 4, then 0.
  -P/--local-port (1.0.x) sets the port of --local-address=IP, or alone
  means 127.0.0.1:PORT; --resolver-port likewise sets the resolver's port.
  Without -R, -r/-N/-k or --stamp the built-in resolver '` + defaultResolverName + `' is used;
  -R looks in the built-in list unless -L is given.
  --daemonize returns once the proxy answers queries (exit 0), or with the
  error that stopped it (at most {timeout} later).
  --user does not chroot (1.x did): the process keeps the real file system
  for its log file and syslog; after logrotate, the new log file must be
  writable by USER (logrotate's "create"). The pid file is removed on exit,
  by a small root helper process when --user has dropped the rights to.
  A pid file naming another running dnscrypt-proxy is not overwritten.
  With --proxy or --tor every packet, certificate queries included, goes
  over TCP through the SOCKS proxy; nothing is sent directly and no name is
  resolved locally. Ephemeral keys and epoch isolation are on by default.
  Tor or a proxy asked for anywhere (--tor, --proxy, or Tor/Proxy in the
  file) cannot be turned off elsewhere ("Tor yes" in the file and
  --tor=false): the program refuses to start rather than go direct.
  SIGHUP reopens the log file. SIGUSR1 logs the state of each resolver of
  a set (state, queries, failures, median answer time, operator) and
  re-checks the certificates at once.
  Plugins (-X, BlackList, QueryLogFile, ...) are not supported: exit 2.
  Exit statuses: 0 success, 1 usage or setup error, 2 plugin or --test
  without a valid certificate, 3 --test timeout, 4 --test margin not met.
`
