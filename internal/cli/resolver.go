package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/jedisct1/go-dnsstamps"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

// defaultResolverName is used when no resolver is given at all.
const defaultResolverName = stamps.DefaultName

// builtinListName names the embedded list in messages.
const builtinListName = "built-in"

// SystemResolversLists are where 1.x packages installed their list; -R
// without -L looks there for names the built-in list does not have.
var SystemResolversLists = []string{
	"/usr/local/share/dnscrypt-proxy/dnscrypt-resolvers.csv",
	"/usr/share/dnscrypt-proxy/dnscrypt-resolvers.csv",
}

// resolver is the chosen resolver.
type resolver struct {
	// spec is a resolver of another kind than DNSCrypt (a plain, DoT or
	// DoH stamp, a tcp://, tls:// or https:// address); the other fields
	// are then unused.
	spec     *upstream.Spec
	row      *stamps.Resolver // a list's row of another kind, before it becomes spec
	name     string           // the list's name, if from a list
	addr     string           // "ip:port", or "host:port" through a proxy
	provider string
	key      ed25519.PublicKey
	notes    []Note
}

// Note is a log line about a choice made while reading the options,
// logged once logging is set up.
type Note struct {
	Level slog.Level
	Msg   string
}

func (r *resolver) note(level slog.Level, format string, args ...any) {
	r.notes = append(r.notes, Note{level, fmt.Sprintf(format, args...)})
}

// chooseResolver applies -R/-L, --stamp, -r/-N/-k and the default.
func chooseResolver(o *Options, env *Env, viaProxy bool) (*resolver, error) {
	r := &resolver{}
	switch {
	case o.Stamp != "":
		if o.ResolverName != "" {
			return nil, setupErrorf("--stamp and --resolver-name exclude each other")
		}
		if o.ProviderName != "" || o.ProviderKey != "" {
			return nil, setupErrorf("--stamp already gives the provider name and key: drop --provider-name and --provider-key")
		}
		st, err := stamps.Parse(o.Stamp)
		if err != nil {
			return nil, valueErrorf("Invalid stamp: [%s]: %s", o.Stamp, userText(err))
		}
		if st.Proto != dnsstamps.StampProtoTypeDNSCrypt {
			spec, err := upstream.FromStamp(st)
			if err != nil {
				return nil, valueErrorf("Unsupported stamp: [%s]: %s", o.Stamp, userText(err))
			}
			return r.other(spec, o, viaProxy, "--stamp")
		}
		r.fromStamp(st)
	case upstream.IsURL(o.ResolverAddress):
		spec, err := upstream.ParseURL(o.ResolverAddress)
		if err != nil {
			return nil, valueErrorf("Invalid resolver address: [%s]: %s", o.ResolverAddress, userText(err))
		}
		if o.ResolverName != "" || o.ProviderName != "" || o.ProviderKey != "" {
			return nil, setupErrorf("--resolver-address=%s names a resolver by itself: drop --resolver-name, --provider-name and --provider-key",
				o.ResolverAddress)
		}
		return r.other(spec, o, viaProxy, "--resolver-address")
	case o.ResolverName != "":
		if err := r.fromList(o, env); err != nil {
			return nil, err
		}
		if row := r.row; row != nil {
			spec, err := upstream.FromStamp(row.Stamp)
			if err != nil {
				return nil, setupErrorf("Resolver [%s] cannot be used: %s", row.Name, userText(err))
			}
			spec.Name = row.Name
			if row.Address != "" {
				spec.Addr = row.Address
			}
			return r.other(spec, o, viaProxy, "--resolver-name")
		}
		if o.ProviderName != "" || o.ProviderKey != "" {
			r.note(slog.LevelWarn, "--provider-name and --provider-key are ignored: the resolvers list gives them for [%s]", o.ResolverName)
		}
	case o.ResolverAddress != "" || o.ProviderName != "" || o.ProviderKey != "":
		var missing []string
		for _, m := range []struct{ v, name string }{
			{o.ResolverAddress, "--resolver-address"},
			{o.ProviderName, "--provider-name"},
			{o.ProviderKey, "--provider-key"},
		} {
			if m.v == "" {
				missing = append(missing, m.name)
			}
		}
		if len(missing) > 0 {
			return nil, setupErrorf("Error: no resolver name given, and %s missing: "+
				"--resolver-address, --provider-name and --provider-key go together (or use --resolver-name or --stamp)",
				strings.Join(missing, " and "))
		}
		pk, err := stamps.ParseProviderKey(o.ProviderKey)
		if err != nil {
			return nil, valueErrorf("Invalid provider key: [%s]: %s", o.ProviderKey, userText(err))
		}
		r.provider, r.key = o.ProviderName, pk
	default:
		res, err := stamps.Lookup(stamps.Default(), defaultResolverName)
		if err != nil { // the built-in list's tests rule this out
			return nil, setupErrorf("No resolver named [%s] found in the built-in list", defaultResolverName)
		}
		r.note(slog.LevelInfo, "No resolver given: using [%s] from the built-in list", res.Name)
		r.fromStamp(res.Stamp)
	}

	if o.ResolverAddress != "" {
		addr, err := resolverAddr(o.ResolverAddress, o.ResolverPort, viaProxy)
		if err != nil {
			return nil, err
		}
		if r.addr != "" {
			r.note(slog.LevelInfo, "Resolver address forced to [%s]", addr)
		}
		r.addr = addr
	} else if o.ResolverPort != 0 {
		host, _, err := net.SplitHostPort(r.addr)
		if err != nil {
			return nil, setupErrorf("Unsupported resolver address: %s", r.addr)
		}
		r.addr = net.JoinHostPort(host, strconv.Itoa(o.ResolverPort))
	}
	if err := checkProviderName(r.provider); err != nil {
		return nil, err
	}
	return r, nil
}

// other takes spec, a resolver of another kind than DNSCrypt, named by the
// option opt, after checking that the other options agree with it.
func (r *resolver) other(spec upstream.Spec, o *Options, viaProxy bool, opt string) (*resolver, error) {
	if opt != "--resolver-address" && o.ResolverAddress != "" {
		return nil, setupErrorf("%s gives the address of a %v resolver: drop --resolver-address", opt, spec.Kind)
	}
	if o.ResolverPort != 0 {
		return nil, setupErrorf("--resolver-port applies to DNSCrypt resolvers: give the port in %s", opt)
	}
	if err := spec.Check(viaProxy); err != nil {
		hint := ""
		if !viaProxy {
			hint = " (a host name works only through --proxy or --tor, which resolve it: never a local lookup)"
		}
		return nil, setupErrorf("Unsupported resolver: %s: %s%s", spec.String(), userText(err), hint)
	}
	r.spec = &spec
	return r, nil
}

// fromStamp takes the resolver of a DNSCrypt stamp.
func (r *resolver) fromStamp(st dnsstamps.ServerStamp) {
	r.addr, r.provider, r.key = st.ServerAddrStr, st.ProviderName, ed25519.PublicKey(st.ServerPk)
}

// fromList applies -R with -L, or else with the built-in list and then
// the system lists, each read only if the lookup gets that far.
func (r *resolver) fromList(o *Options, env *Env) error {
	src, list, listErr := builtinListName, stamps.Default(), error(nil)
	systemLists := env.SystemLists
	if o.ResolversList != "" {
		src, systemLists = o.ResolversList, nil
		if list, listErr = readResolversList(env, src); list == nil && listErr != nil {
			return listErr
		}
	}

	name := o.ResolverName
	if strings.EqualFold(name, "random") {
		res, err := stamps.Random(list, nil)
		if err != nil {
			return setupErrorf("No suitable candidates found for a random selection in the [%s] list", src)
		}
		r.note(slog.LevelInfo, "Randomly chosen resolver: [%s]", res.Name)
		r.fromRow(res)
		return nil
	}
	var names []string
	// find looks in one list; listErr holds the rows it could not use.
	find := func(src string, list []stamps.Resolver, listErr error) (bool, error) {
		names = append(names, "["+src+"]")
		if res, err := stamps.Lookup(list, name); err == nil {
			r.fromRow(res)
			return true, nil
		}
		// The row may exist but be unusable.
		for _, e := range joinedErrors(listErr) {
			if re, ok := errors.AsType[*stamps.RowError](e); ok && strings.EqualFold(re.Name, name) {
				return false, setupErrorf("Resolver [%s] in the [%s] list cannot be used: %s", name, src, userText(re))
			}
		}
		return false, nil
	}
	if found, err := find(src, list, listErr); found || err != nil {
		return err
	}
	for _, path := range systemLists {
		list, listErr := readResolversList(env, path)
		if list == nil {
			continue // missing or unusable: 1.x's packages may not be installed
		}
		if found, err := find(path, list, listErr); found || err != nil {
			return err
		}
	}
	return setupErrorf("No resolver named [%s] found in the %s list", name, strings.Join(names, " or "))
}

func (r *resolver) fromRow(res stamps.Resolver) {
	if res.Stamp.Proto == dnsstamps.StampProtoTypeDNSCrypt {
		r.fromStamp(res.Stamp)
	} else {
		r.row = &res
	}
	r.name = res.Name
	if res.DNSSEC {
		r.note(slog.LevelInfo, "+ DNS Security Extensions are supported")
	} else {
		r.note(slog.LevelInfo, "- [%s] does not support DNS Security Extensions", res.Name)
	}
	if res.Namecoin {
		r.note(slog.LevelInfo, "+ Namecoin domains can be resolved")
	}
	if res.NoLogs {
		r.note(slog.LevelInfo, "+ Provider supposedly doesn't keep logs")
	} else {
		r.note(slog.LevelWarn, "- [%s] logs your activity - a different provider might be better a choice if privacy is a concern", res.Name)
	}
}

// joinedErrors lists the errors joined in err.
func joinedErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

// readResolversList reads a CSV list. It returns the usable rows and the
// errors of the bad ones; a nil list means the file cannot be used.
func readResolversList(env *Env, path string) ([]stamps.Resolver, error) {
	f, err := env.Open(path)
	if err != nil {
		return nil, setupErrorf("Unable to read [%s]: %v", path, unwrapPathError(err))
	}
	defer f.Close()
	list, err := stamps.ParseCSV(f)
	if list == nil && err != nil {
		return nil, setupErrorf("Unable to use the resolvers list [%s]: %v", path, err)
	}
	return list, err
}

// resolverAddr normalizes an -r value: an IP with an optional port (443
// by default), or through a proxy also a host name.
func resolverAddr(s string, port int, viaProxy bool) (string, error) {
	defPort := dnsstamps.DefaultPort
	if port != 0 {
		defPort = port
	}
	addr, err := stamps.NormalizeAddr(s, defPort)
	if err != nil && viaProxy && !strings.HasPrefix(s, "[") && strings.Count(s, ":") <= 1 {
		addr, err = normalizeHostPort(s, defPort)
	}
	if err != nil {
		hint := ""
		if !viaProxy && strings.Count(s, ":") <= 1 {
			if h, _, _ := strings.Cut(s, ":"); checkHostName(h) == nil {
				hint = " (an IP address is needed; host names only work through --proxy or --tor)"
			}
		}
		return "", setupErrorf("Unsupported resolver address: %s%s", s, hint)
	}
	if port != 0 {
		if portOf(addr) != port {
			return "", setupErrorf("--resolver-port=%d conflicts with the port of --resolver-address=%s", port, s)
		}
	}
	return addr, nil
}

// localAddr normalizes -a and -P into "ip:port".
func localAddr(o *Options) (string, error) {
	s := o.LocalAddress
	if s == "" {
		s = "127.0.0.1"
	}
	defPort := 53
	if o.LocalPort != 0 {
		defPort = o.LocalPort
	}
	addr, err := stamps.NormalizeAddr(s, defPort)
	if err != nil {
		return "", setupErrorf("Unsupported local address: %s", s)
	}
	if o.LocalPort != 0 {
		if portOf(addr) != o.LocalPort {
			return "", setupErrorf("--local-port=%d conflicts with the port of --local-address=%s", o.LocalPort, s)
		}
	}
	return addr, nil
}

// portOf returns the port of a "host:port" address, 0 if it has none.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// checkProviderName applies 1.x's check (the name starts with the
// protocol version, "2.") and refuses names no resolver could answer for.
func checkProviderName(name string) error {
	if !strings.HasPrefix(name, "2.") {
		return setupErrorf("Unsupported server protocol version (the provider name must start with \"2.\": [%s])", name)
	}
	if err := dnscrypt.CheckProviderName(name); err != nil {
		return valueErrorf("Invalid provider name: [%s]", name)
	}
	return nil
}

// Env is what building a plan reads from the system; tests replace it.
type Env struct {
	// Open opens a file for reading (resolvers lists, client keys).
	Open func(path string) (io.ReadCloser, error)
	// LookupUser finds a user account by name.
	LookupUser func(name string) (*User, error)
	// SystemLists are the 1.x resolvers lists looked at after the
	// built-in one when -R is given without -L.
	SystemLists []string
}

// DefaultEnv uses the real system.
func DefaultEnv() *Env {
	return &Env{Open: openFile, LookupUser: LookupUser, SystemLists: SystemResolversLists}
}

// userText is an error's text without the package prefixes of the
// sentinels it wraps ("stamps: invalid provider key: ...").
func userText(err error) string {
	s := err.Error()
	for _, p := range []string{"stamps: ", "certs: ", "proxy: ", "cli: ", "upstream: ", "egress: ", "names: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}
