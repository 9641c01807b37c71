package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// Main runs dnscrypt-proxy with the command-line arguments args (without
// the program name) and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if path := os.Getenv(pidHelperEnv); path != "" {
		return runPidFileHelper(path)
	}
	child := openDaemonChild()
	code := run(args, stdout, stderr, DefaultEnv(), child)
	child.close()
	return code
}

// Parse reads the command line: options, and at most one argument that
// is not an option, a configuration file (see [ParseConfig]). The file is
// read first, then the command line's options are applied on top: an
// option given on the command line replaces the file's value, or all of
// its values for an option that may be given several times (the file's
// are dropped, not checked). A file alone is 1.x's configuration mode;
// 1.x ignored a file given with options, and this proxy never does.
// Parsing stops at -h or -V, before any file is read.
//
// Errors are [*ExitError]s: more than one argument that is not an option
// is a usage error naming them; an error in the file's options names the
// file.
func Parse(args []string) (*Options, error) {
	cl, err := ParseArgs(args)
	if err != nil || cl.Help || cl.Version {
		return cl, err
	}
	switch len(cl.Args) {
	case 0:
		return cl, nil
	case 1:
	default:
		return nil, usageErrorf("more than one argument that is not an option: [%s] (give at most one configuration file; options go before or after it)",
			strings.Join(cl.Args, "] ["))
	}
	path := cl.Args[0]
	cargs, err := ReadConfigFile(path)
	if err != nil {
		return nil, err
	}
	// The file's occurrences of the options the command line gives go.
	cargs = slices.DeleteFunc(cargs, func(a string) bool {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		return cl.Given(name)
	})
	o := &Options{given: make(map[string]bool)}
	if err := o.parseArgs(cargs); err != nil {
		if ee, ok := errors.AsType[*ExitError](err); ok {
			e := *ee
			e.Msg = path + ": " + e.Msg
			e.Hint = false
			return nil, &e
		}
		return nil, err
	}
	if len(o.Args) > 0 { // ParseConfig makes only "--name[=value]" arguments
		return nil, configErrorf("%s: unexpected arguments %q", path, o.Args)
	}
	// The command line parsed once already: this cannot fail.
	if err := o.parseArgs(args); err != nil {
		return nil, err
	}
	o.Args, o.ConfigFile = nil, path
	return o, nil
}

// load parses the command line and works out the plan. Every plan it
// returns has passed [checkEgress]; nil with a nil error means -h or -V.
func load(args []string, env *Env) (*Options, *Plan, error) {
	o, err := Parse(args)
	if err != nil || o.Help || o.Version {
		return o, nil, err
	}
	plan, err := o.Plan(env)
	if err != nil {
		return nil, nil, err
	}
	if err := checkEgress(args, env, plan); err != nil {
		return nil, nil, err
	}
	return o, plan, nil
}

// report prints an error that ends the program before logging is set up.
func report(w io.Writer, child *daemonChild, err error) int {
	if ee, ok := errors.AsType[*ExitError](err); ok && ee.Hint {
		fmt.Fprintf(w, "dnscrypt-proxy: %s\nTry 'dnscrypt-proxy --help' for more information.\n", ee.Msg)
	} else {
		line := prioLabels[prioErr] + err.Error() // an ExitError's text is its Msg
		fmt.Fprintf(w, "%s %s\n", time.Now().Format(time.ANSIC), line)
		child.log(line)
	}
	return exitCode(err)
}

func run(args []string, stdout, stderr io.Writer, env *Env, child *daemonChild) int {
	o, plan, err := load(args, env)
	if err != nil {
		return report(stderr, child, err)
	}
	switch {
	case o.Help:
		writeUsage(stdout)
		return ExitOK
	case o.Version:
		writeVersion(stdout)
		return ExitOK
	}
	if o.ConfigFile != "" && len(args) > 1 {
		plan.note(slog.LevelInfo, "Options from the configuration file [%s], then from the command line (which win)", o.ConfigFile)
	}
	// The daemon leaves the working directory: make paths absolute.
	for _, p := range []*string{&plan.PidFile, &plan.Log.File} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	// systemd's sockets before any fork: LISTEN_PID names this process,
	// not a child, and the daemon pipe would take descriptor 3.
	var sd activation
	sd.pc, sd.ln, _, sd.err = systemdSockets()
	if plan.Daemonize && child == nil {
		if !sd.active() {
			return daemonize(args, plan, stderr)
		}
		// systemd already supervises the process.
		plan.note(proxy.LevelNotice, "--daemonize ignored under systemd socket activation")
	}
	return runPlan(plan, sd, stdout, stderr, child)
}

// activation is what systemd socket activation passed to this process.
type activation struct {
	pc  net.PacketConn // nil: nothing passed; bind the sockets
	ln  net.Listener
	err error // sockets were passed, but are not usable
}

func (a activation) active() bool { return a.pc != nil || a.err != nil }

// runPlan sets up logging, the pid file, the sockets (sd's, if any) and
// the user, then serves (or tests the certificate) until a signal.
func runPlan(plan *Plan, sd activation, stdout, stderr io.Writer, child *daemonChild) int {
	pc, ln := sd.pc, sd.ln
	defer func() { // Serve closes them too; this covers the failures before
		if pc != nil {
			pc.Close()
			ln.Close()
		}
	}()
	// Signals first: SIGHUP's default action would end the process.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	h, err := OpenLogHandler(plan.Log, stdout, stderr)
	if err != nil {
		return report(stderr, child, setupErrorf("Unable to open log file [%s]: %v", plan.Log.File, unwrapPathError(err)))
	}
	defer h.Close()
	if child != nil {
		h.setTee(child.log)
	}
	log := slog.New(h)
	fail := func(format string, args ...any) int {
		logf(log, slog.LevelError, format, args...)
		return ExitFailure
	}

	logf(log, proxy.LevelNotice, "Starting dnscrypt-proxy %s", Version)
	for _, n := range plan.Notes {
		logf(log, n.Level, "%s", n.Msg)
	}
	// Where the client key comes from, in 1.x's words: only DNSCrypt
	// resolvers use one.
	if slices.ContainsFunc(plan.Proxy.Resolvers, func(s upstream.Spec) bool { return s.Kind == upstream.KindDNSCrypt }) {
		switch {
		case plan.Proxy.ClientKey != nil:
			logf(log, slog.LevelInfo, "Using a user-supplied client secret key")
		case plan.Proxy.EphemeralKeys:
			logf(log, slog.LevelInfo, "Ephemeral keys enabled - generating a new seed")
		default:
			logf(log, slog.LevelInfo, "Generating a new session key pair")
		}
		logf(log, slog.LevelInfo, "Done")
	}

	if plan.Test {
		if plan.User != nil {
			if err := dropPrivileges(plan.User); err != nil {
				return fail("Unable to switch to user [%s]: %v", plan.User.Name, err)
			}
		}
		return testCerts(ctx, plan, log)
	}

	var helper *pidFileHelper
	if plan.PidFile != "" {
		if err := writePidFile(plan.PidFile); err != nil {
			return fail("Unable to create pid file [%s]: %s", plan.PidFile, userText(unwrapPathError(err)))
		}
		pid := os.Getpid()
		defer func() {
			if helper != nil {
				helper.done()
			} else if err := removePidFile(plan.PidFile, pid); err != nil {
				logf(log, slog.LevelWarn, "Unable to remove pid file [%s]: %v", plan.PidFile, unwrapPathError(err))
			}
		}()
	}

	if sd.err != nil {
		return fail("%v", sd.err)
	}
	if pc == nil {
		if pc, ln, err = bind(plan.Listen); err != nil {
			return fail("%v", err)
		}
	}

	if plan.User != nil {
		if plan.PidFile != "" {
			if helper, err = startPidFileHelper(plan.PidFile); err != nil {
				return fail("Unable to start the pid file helper: %v", err)
			}
		}
		if err := dropPrivileges(plan.User); err != nil {
			return fail("Unable to switch to user [%s]: %v", plan.User.Name, err)
		}
	}
	if child != nil {
		os.Chdir("/")
	}

	cfg := plan.Proxy
	cfg.Logger = log
	cfg.OnReady = func() { // called once, by Serve
		if err := sdNotify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid())); err != nil {
			logf(log, slog.LevelDebug, "sd_notify failed: %v", err)
		}
		h.setTee(nil)
		child.ready()
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return fail("%s", invalidConfig(err))
	}

	hupDone := make(chan struct{})
	defer close(hupDone)
	go func() {
		for {
			select {
			case <-hup:
			case <-usr1:
				// SIGUSR1: the state of each resolver of a set (nothing
				// with one), then an early check of the certificates.
				p.Status()
				p.RefreshCerts()
				continue
			case <-hupDone:
				return
			}
			if err := h.Reopen(); err != nil {
				logf(log, slog.LevelError, "Unable to reopen the log file [%s]: %v", plan.Log.File, unwrapPathError(err))
			} else if plan.Log.File != "" {
				logf(log, slog.LevelInfo, "Log file reopened")
			}
		}
	}()

	err = p.Serve(ctx, pc, ln)
	sdNotify("STOPPING=1")
	if err != nil && ctx.Err() == nil {
		return fail("%v", err)
	}
	return ExitOK // the proxy logged "Stopping proxy"
}
