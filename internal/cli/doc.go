// Package cli is the command line of dnscrypt-proxy: it reads the
// options and configuration file of dnscrypt-proxy 1.x (so that existing
// command lines, configuration files and scripts keep working), turns
// them into a [proxy.Config], and runs the process around the proxy:
// logging, daemonizing, the pid file, dropping privileges, systemd socket
// activation and notification, signals, and the --test certificate check.
//
// The main function is one line:
//
//	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
//
// The steps are usable alone:
//
//	o, err := cli.Parse(args)        // the config file if any, then the options on top
//	plan, err := o.Plan(nil)          // resolver, key, user, addresses; no network I/O
//	h, err := cli.OpenLogHandler(plan.Log, os.Stdout, os.Stderr)
//
// [Main] runs no plan that has not passed one check: when the raw command
// line or a configuration file it names asks for Tor or a SOCKS proxy
// anywhere, the plan must carry the proxy, or the program refuses to start
// (nothing is ever sent directly).
//
// Errors that end the program are [*ExitError]s carrying 1.x's exit
// status and wording: 1 for usage and setup errors, 2 for plugins (not
// supported) and for --test without a valid certificate, 3 for a --test
// timeout, 4 for a certificate ending within the --test margin.
//
// Differences from 1.x, by design: a configuration file given with
// options is read, the options applying on top (1.x ignored it), and a
// second argument that is not an option is an error; --loglevel above 7 is
// refused; --user does not chroot; -R without -L
// uses a built-in list; with no resolver at all a built-in default is
// used; a pid file of another running dnscrypt-proxy is not overwritten;
// --daemonize returns only once the proxy answers, and does not fork
// under systemd socket activation (systemd supervises); a second plain
// -r, or a second -R, is an error (1.x took the last); and there are new
// options for stamps and Tor (--stamp, --proxy, --tor, --isolation,
// --isolation-epoch, --optimistic-data, --no-ephemeral-keys).
//
// # Several resolvers
//
// Each --stamp, each name of -R NAME1,NAME2,... (looked up as one -R
// NAME), the N distinct resolvers of -R random:N (drawn by the rules of
// 1.x's -R random among the list's rows not named otherwise; "random" is
// random:1), and each URL form of -r (tcp://, tls://, https://, which may
// be repeated) is one resolver; they mix, in that order, and a resolver
// named twice is an error. The 1.x form -r IP -N NAME -k KEY is one
// DNSCrypt resolver beside them (when neither --stamp nor -R is given). A
// plain -r or --resolver-port given with --stamp or -R sets the address
// of their one DNSCrypt resolver, as in 1.x, and is an error when they
// name several. --selection and --hedge-other-resolver need several
// resolvers; --hedge also works with one (it is then asked again).
// Resolvers from a list carry their operator (resolverset.Operator of the
// row's URL column, provider or TLS name and address); the runtime derives
// the others'. With several resolvers --test checks each DNSCrypt one and
// exits with the worst status (2, then 3, then 4, then 0).
package cli
