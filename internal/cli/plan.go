package cli

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
)

// Plan is what the options mean: the proxy's configuration and what the
// process around it does.
type Plan struct {
	// Proxy is the proxy's configuration, without Logger and OnReady.
	Proxy proxy.Config
	// Listen is the "ip:port" to bind UDP and TCP to (unless systemd
	// passes the sockets).
	Listen string

	Daemonize bool
	PidFile   string
	User      *User // nil: keep the current user
	Log       LogSettings

	// Test is --test: check the certificate, then exit.
	Test       bool
	TestMargin time.Duration

	// Notes are log lines about the choices made, for once logging works.
	Notes []Note
}

// LogSettings say where the log goes.
type LogSettings struct {
	File        string // -l: append to this file
	Syslog      bool   // -S, or -d without -l
	Prefix      string // -Z
	MaxPriority int    // -m: syslog priorities up to this one are logged
}

// DefaultLogLevel is 1.x's default --loglevel (LOG_INFO).
const DefaultLogLevel = 6

// Plan checks the options together and against the system (files, user
// accounts) and works out what to do. Errors are [*ExitError]s with 1.x's
// messages and exit statuses.
func (o *Options) Plan(env *Env) (*Plan, error) {
	if env == nil {
		env = DefaultEnv()
	}
	p := &Plan{
		Daemonize: o.Daemonize,
		PidFile:   o.PidFile,
		Test:      o.Test,
		Log: LogSettings{
			File:        o.LogFile,
			Syslog:      o.Syslog,
			Prefix:      o.SyslogPrefix,
			MaxPriority: DefaultLogLevel,
		},
	}
	if o.Given("loglevel") {
		p.Log.MaxPriority = o.LogLevel
	}
	if o.LogFile != "" && o.Syslog {
		return nil, setupErrorf("--logfile and --syslog are mutually exclusive")
	}
	if o.Test {
		p.TestMargin = o.TestMargin
		if o.Daemonize {
			p.Daemonize = false
			p.note(slog.LevelInfo, "--test: not going to the background")
		}
		if o.PidFile != "" {
			p.PidFile = ""
			p.note(slog.LevelInfo, "--test: no pid file")
		}
	}
	if p.Daemonize && p.Log.File == "" {
		p.Log.Syslog = true // 1.x: --daemonize implies --syslog unless --logfile
	}

	cfg := &p.Proxy
	cfg.TCPOnly = o.TCPOnly
	cfg.IgnoreTimestamps = o.IgnoreTimestamps
	cfg.MaxActiveRequests = o.MaxActiveRequests
	cfg.Timeout = o.Timeout // zero: the proxy's default
	if o.Given("edns-payload-size") {
		// 1.x: 512 or less disables the rewrite; Config's zero means 1252.
		cfg.EDNSPayloadSize = max(o.EDNSPayloadSize, 512)
	}

	// Proxy and Tor.
	viaProxy := o.Proxy != "" || o.Tor
	if viaProxy {
		s := &proxy.SOCKS{Addr: torSOCKSAddr, Isolation: proxy.IsolationEpoch}
		if o.Proxy != "" {
			u, err := parseProxyURL(o.Proxy)
			if err != nil {
				return nil, err
			}
			s.Addr, s.User, s.Password = u.Addr, u.User, u.Password
		}
		if o.Given("isolation") {
			s.Isolation = o.Isolation
		}
		s.Epoch = o.IsolationEpoch
		s.OptimisticData = o.OptimisticData
		cfg.SOCKS = s
	} else {
		for _, name := range []string{"isolation", "isolation-epoch", "optimistic-data"} {
			if o.Given(name) {
				return nil, setupErrorf("--%s needs --proxy or --tor", name)
			}
		}
	}

	// Special-use names and rebinding protection.
	cfg.PrivateDomains = o.PrivateDomains
	if o.Given("rebind-protection") {
		cfg.FilterInternal = proxy.Off
		if o.RebindProtection {
			cfg.FilterInternal = proxy.On
		}
	}

	// Client key.
	ephemeralGiven := o.Given("ephemeral-keys")
	if o.ClientKeyFile != "" {
		if ephemeralGiven && o.EphemeralKeys {
			return nil, setupErrorf("--client-key and --ephemeral-keys are mutually exclusive")
		}
		kp, err := readClientKey(env, o.ClientKeyFile)
		if err != nil {
			return nil, setupErrorf("Client key file [%s] could not be used: %s", o.ClientKeyFile, userText(err))
		}
		cfg.ClientKey = kp
	} else {
		cfg.EphemeralKeys = o.EphemeralKeys
		if !ephemeralGiven && viaProxy {
			cfg.EphemeralKeys = true // Tor mode default
		}
	}

	// Resolvers.
	res, err := chooseResolvers(o, env, viaProxy)
	if err != nil {
		return nil, err
	}
	cfg.Resolvers = res.specs
	if slices.ContainsFunc(res.ops, func(op string) bool { return op != "" }) {
		cfg.Operators = res.ops
	}
	p.Notes = append(p.Notes, res.notes...)
	if err := planSet(o, cfg); err != nil {
		return nil, err
	}
	if !o.Test {
		if s := setSummary(cfg); s != "" {
			p.note(slog.LevelInfo, "%s", s)
		}
	}

	// Listening address (also checked in --test mode, as 1.x does).
	if p.Listen, err = localAddr(o); err != nil {
		return nil, err
	}

	if o.User != "" {
		u, err := env.LookupUser(o.User)
		if err != nil {
			return nil, setupErrorf("Unknown user: [%s]", o.User)
		}
		p.User = u
	}

	if err := p.Proxy.Validate(); err != nil {
		return nil, setupErrorf("%s", invalidConfig(err))
	}
	return p, nil
}

// planSet applies --selection, --hedge and --hedge-other-resolver, which
// make sense with several resolvers (--hedge with one too: hedges then go
// to it again, over another circuit through a proxy).
func planSet(o *Options, cfg *proxy.Config) error {
	n := len(cfg.Resolvers)
	for _, name := range []string{"selection", "hedge-other-resolver"} {
		if o.Given(name) && n < 2 {
			return setupErrorf("--%s needs several resolvers (repeat --stamp, give -R NAME1,NAME2 or -R random:N, ...)", name)
		}
	}
	if o.Given("selection") {
		cfg.Selection = o.Selection
	}
	if o.Given("hedge") {
		cfg.Hedge = toggle(o.Hedge)
	}
	if o.Given("hedge-other-resolver") {
		if cfg.Hedge == proxy.Off {
			return setupErrorf("--hedge-other-resolver says where hedges go, and --hedge is off")
		}
		cfg.HedgeOther = toggle(o.HedgeOther)
	}
	return nil
}

func toggle(on bool) proxy.Toggle {
	if on {
		return proxy.On
	}
	return proxy.Off
}

// setSummary describes the resolvers of a set and how they are used, as
// the runtime applies its defaults (proxy.Config: Selection, Hedge,
// HedgeOther): "" for one resolver without hedging, which is used as in
// 1.x.
func setSummary(cfg *proxy.Config) string {
	n := len(cfg.Resolvers)
	proxied := cfg.SOCKS != nil
	hedge := cfg.Hedge == proxy.On || cfg.Hedge == proxy.Auto && n > 1
	if n < 2 && !hedge {
		return ""
	}
	names := make([]string, n)
	for i := range cfg.Resolvers {
		names[i] = cfg.Resolvers[i].String()
	}
	var how []string
	if n > 1 {
		sel := cfg.Selection
		if sel == proxy.SelectAuto {
			sel = proxy.SelectFastest
			if proxied {
				sel = proxy.SelectRotate
			}
		}
		how = append(how, sel.String()+" selection")
	}
	switch other := cfg.HedgeOther == proxy.On || cfg.HedgeOther == proxy.Auto && !proxied; {
	case !hedge:
		how = append(how, "no hedging")
	case other && n > 1:
		how = append(how, "hedging to another resolver")
	case proxied:
		how = append(how, "hedging to the same resolver over another circuit")
	default:
		how = append(how, "hedging to the same resolver")
	}
	word := "resolvers"
	if n == 1 {
		word = "resolver"
	}
	return fmt.Sprintf("Using %d %s (%s): %s", n, word, strings.Join(names, ", "), strings.Join(how, ", "))
}

func (p *Plan) note(level slog.Level, format string, args ...any) {
	p.Notes = append(p.Notes, Note{level, fmt.Sprintf(format, args...)})
}

func readClientKey(env *Env, path string) (*dnscrypt.KeyPair, error) {
	f, err := env.Open(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	return readClientKeyFrom(f)
}
