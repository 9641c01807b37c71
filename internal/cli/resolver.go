package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/jedisct1/go-dnsstamps"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/resolverset"
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

// chosen is what the resolver options name: the resolvers, in order (the
// --stamp ones, the -R ones, the one of -r/-N/-k or the default, the URL
// forms of -r), and who runs each.
type chosen struct {
	specs []upstream.Spec
	// ops, parallel to specs: the operator of a resolvers list's row
	// (see resolverset.Operator); "" for the others, whose operator the
	// runtime derives.
	ops   []string
	from  []string // parallel to specs: the option that named it
	notes []Note
}

// entry is one resolver as an option names it.
type entry struct {
	spec upstream.Spec
	row  *stamps.Resolver // the list's row, if it comes from one
	from string           // "--stamp", "-R NAME", ... for messages
}

// Note is a log line about a choice made while reading the options,
// logged once logging is set up.
type Note struct {
	Level slog.Level
	Msg   string
}

func (c *chosen) note(level slog.Level, format string, args ...any) {
	c.notes = append(c.notes, Note{level, fmt.Sprintf(format, args...)})
}

// add appends e, unless it names a resolver already chosen.
func (c *chosen) add(e entry) error {
	for i := range c.specs {
		if sameResolver(&c.specs[i], &e.spec) {
			return setupErrorf("Resolver %s is given twice (%s and %s): name each resolver once", e.spec.String(), c.from[i], e.from)
		}
	}
	op := ""
	if e.row != nil {
		op = resolverset.Operator(e.row.URL, cmp.Or(e.spec.ProviderName, e.spec.ServerName), e.spec.Addr)
	}
	c.specs = append(c.specs, e.spec)
	c.ops = append(c.ops, op)
	c.from = append(c.from, e.from)
	return nil
}

// sameResolver reports whether a and b reach the same resolver the same
// way (their names aside).
func sameResolver(a, b *upstream.Spec) bool {
	return a.Kind == b.Kind && strings.EqualFold(a.Addr, b.Addr) && a.ProviderName == b.ProviderName &&
		a.ServerName == b.ServerName && a.Path == b.Path
}

// chooseResolvers applies --stamp, -R/-L, -r/-N/-k, --resolver-port and
// the default. With one resolver named in one of 1.x's ways, it is 1.x's
// choice exactly; the rules for several are in the package doc.
func chooseResolvers(o *Options, env *Env, viaProxy bool) (*chosen, error) {
	c := &chosen{}
	plain, urls, err := splitResolverAddresses(o.ResolverAddresses)
	if err != nil {
		return nil, err
	}
	names, random, err := resolverNames(o.ResolverNames)
	if err != nil {
		return nil, err
	}
	providerGiven := o.ProviderName != "" || o.ProviderKey != ""
	if len(o.Stamps) > 0 && providerGiven {
		return nil, setupErrorf("--stamp already gives the provider name and key: drop --provider-name and --provider-key")
	}

	// The resolvers named by --stamp and -R.
	var named []entry
	for _, s := range o.Stamps {
		e, err := stampEntry(s)
		if err != nil {
			return nil, err
		}
		named = append(named, e)
	}
	lists := &resolverLists{o: o, env: env}
	randomAt := -1
	for _, name := range names {
		if name == "" { // the place of "random[:N]"
			randomAt = len(named)
			continue
		}
		row, err := lists.lookup(name)
		if err != nil {
			return nil, err
		}
		e, err := rowEntry(row, "-R "+row.Name)
		if err != nil {
			return nil, err
		}
		c.rowNotes(row, len(names) > 1)
		named = append(named, e)
	}

	// The URL forms of -r.
	var others []entry
	for _, u := range urls {
		spec, err := upstream.ParseURL(u)
		if err != nil {
			return nil, valueErrorf("Invalid resolver address: [%s]: %s", u, userText(err))
		}
		others = append(others, entry{spec: spec, from: "--resolver-address=" + u})
	}
	if len(others) > 0 && plain == "" && providerGiven && len(names) == 0 {
		return nil, setupErrorf("--resolver-address=%s names a resolver by itself: drop --provider-name and --provider-key "+
			"(they go with the plain --resolver-address=IP[:PORT] of a DNSCrypt resolver)", urls[0])
	}

	// "-R random[:N]": distinct resolvers, none of those named otherwise.
	if random > 0 {
		picks, err := lists.random(random, append(append([]entry(nil), named...), others...))
		if err != nil {
			return nil, err
		}
		var e []entry
		var quoted []string
		for _, row := range picks {
			pe, err := rowEntry(row, "-R random")
			if err != nil {
				return nil, err
			}
			e = append(e, pe)
			quoted = append(quoted, "["+row.Name+"]")
		}
		if len(picks) == 1 {
			c.note(slog.LevelInfo, "Randomly chosen resolver: %s", quoted[0])
		} else {
			c.note(slog.LevelInfo, "Randomly chosen resolvers: %s", strings.Join(quoted, ", "))
		}
		for _, row := range picks {
			c.rowNotes(row, len(names) > 1 || len(picks) > 1)
		}
		named = slices.Insert(named, randomAt, e...)
	}

	// 1.x's DNSCrypt form, or the default; the overrides of a plain -r
	// and --resolver-port.
	switch {
	case len(named) == 0 && (plain != "" || providerGiven):
		e, err := tripleEntry(o, plain, viaProxy)
		if err != nil {
			return nil, err
		}
		named = append(named, e)
	case len(named) == 0 && len(others) == 0:
		res, err := stamps.Lookup(stamps.Default(), defaultResolverName)
		if err != nil { // the built-in list's tests rule this out
			return nil, setupErrorf("No resolver named [%s] found in the built-in list", defaultResolverName)
		}
		c.note(slog.LevelInfo, "No resolver given: using [%s] from the built-in list", res.Name)
		e, err := rowEntry(res, "the default")
		if err != nil {
			return nil, err
		}
		e.spec.Name = "" // named by its address, as before there were lists
		named = append(named, e)
		if err := overrideAddress(&named[0], "", o.ResolverPort, viaProxy); err != nil {
			return nil, err
		}
	case len(names) > 0 && providerGiven:
		c.note(slog.LevelWarn, "--provider-name and --provider-key are ignored: the resolvers list gives them for [%s]", strings.Join(o.ResolverNames, ","))
		fallthrough
	default:
		if plain == "" && o.ResolverPort == 0 || len(named) == 0 {
			break
		}
		if len(named) > 1 {
			what := "--resolver-port sets the port"
			if plain != "" {
				what = "A plain --resolver-address=" + plain + " sets the address"
			}
			return nil, setupErrorf("%s of one DNSCrypt resolver, but %d are named (%s): "+
				"give each resolver its own address (a stamp, or a tcp://, tls:// or https:// address)", what, len(named), fromList(named))
		}
		if err := overrideAddress(&named[0], plain, o.ResolverPort, viaProxy); err != nil {
			return nil, err
		}
		if plain != "" {
			c.note(slog.LevelInfo, "Resolver address forced to [%s]", named[0].spec.Addr)
		}
	}
	if len(named) == 0 && o.ResolverPort != 0 {
		return nil, setupErrorf("--resolver-port applies to DNSCrypt resolvers: give the port in %s", others[0].from)
	}

	for _, e := range append(named, others...) {
		if err := checkEntry(&e, viaProxy); err != nil {
			return nil, err
		}
		if err := c.add(e); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// fromList names the options of entries, for messages.
func fromList(entries []entry) string {
	var s []string
	for _, e := range entries {
		s = append(s, e.from)
	}
	return strings.Join(s, ", ")
}

// splitResolverAddresses sorts the -r values into the plain address of a
// DNSCrypt resolver (1.x's -r: at most one) and the URL forms.
func splitResolverAddresses(values []string) (plain string, urls []string, err error) {
	for _, v := range values {
		if upstream.IsURL(v) {
			urls = append(urls, v)
			continue
		}
		if plain != "" {
			return "", nil, setupErrorf("--resolver-address is given twice with a plain address ([%s] and [%s]): "+
				"a plain address is that of the one DNSCrypt resolver of --provider-name and --provider-key (or of -R NAME or --stamp). "+
				"For several resolvers, repeat --stamp, give -R NAME1,NAME2, or repeat --resolver-address with tcp://, tls:// or https:// addresses",
				plain, v)
		}
		plain = v
	}
	return plain, urls, nil
}

// resolverNames splits the value of -R, a comma-separated list of names,
// at most one of them "random" or "random:N". The place of the random
// ones is an empty name; random is their number (0: none). -R may be given
// once only.
func resolverNames(values []string) (names []string, random int, err error) {
	switch len(values) {
	case 0:
		return nil, 0, nil
	case 1:
	default:
		return nil, 0, setupErrorf("--resolver-name is given %d times ([%s]): give several resolvers in one, -R NAME1,NAME2",
			len(values), strings.Join(values, "] ["))
	}
	for n := range strings.SplitSeq(values[0], ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			return nil, 0, valueErrorf("Invalid resolver name list: [%s] (an empty name)", values[0])
		}
		k, isRandom, ok := parseRandom(n)
		if !ok {
			return nil, 0, valueErrorf("Invalid resolver name: [%s] (random:N wants a number N from 1 up)", n)
		}
		if isRandom {
			if random > 0 {
				return nil, 0, valueErrorf("Invalid resolver name list: [%s] (random given twice: use random:N)", values[0])
			}
			random, n = k, ""
		}
		names = append(names, n)
	}
	return names, random, nil
}

// parseRandom recognizes "random" (one) and "random:N", ignoring case.
func parseRandom(name string) (n int, isRandom, ok bool) {
	if strings.EqualFold(name, "random") {
		return 1, true, true
	}
	prefix, count, found := strings.Cut(name, ":")
	if !found || !strings.EqualFold(prefix, "random") {
		return 0, false, true
	}
	k, ok := parseDecimal(count)
	if !ok || k == 0 || k > math.MaxInt32 {
		return 0, true, false
	}
	return int(k), true, true
}

// stampEntry is the resolver of a --stamp.
func stampEntry(s string) (entry, error) {
	st, err := stamps.Parse(s)
	if err != nil {
		return entry{}, valueErrorf("Invalid stamp: [%s]: %s", s, userText(err))
	}
	spec, err := upstream.FromStamp(st)
	if err != nil {
		return entry{}, valueErrorf("Unsupported stamp: [%s]: %s", s, userText(err))
	}
	return entry{spec: spec, from: "--stamp"}, nil
}

// rowEntry is the resolver of a list's row.
func rowEntry(row stamps.Resolver, from string) (entry, error) {
	spec, err := upstream.FromStamp(row.Stamp)
	if err != nil {
		return entry{}, setupErrorf("Resolver [%s] cannot be used: %s", row.Name, userText(err))
	}
	spec.Name = row.Name
	if row.Address != "" && spec.Kind != upstream.KindDNSCrypt {
		spec.Addr = row.Address
	}
	return entry{spec: spec, row: &row, from: from}, nil
}

// tripleEntry is 1.x's resolver of -r, -N and -k, which go together.
func tripleEntry(o *Options, plain string, viaProxy bool) (entry, error) {
	var missing []string
	for _, m := range []struct{ v, name string }{
		{plain, "--resolver-address"},
		{o.ProviderName, "--provider-name"},
		{o.ProviderKey, "--provider-key"},
	} {
		if m.v == "" {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return entry{}, setupErrorf("Error: no resolver name given, and %s missing: "+
			"--resolver-address, --provider-name and --provider-key go together (or use --resolver-name or --stamp)",
			strings.Join(missing, " and "))
	}
	pk, err := stamps.ParseProviderKey(o.ProviderKey)
	if err != nil {
		return entry{}, valueErrorf("Invalid provider key: [%s]: %s", o.ProviderKey, userText(err))
	}
	addr, err := resolverAddr(plain, o.ResolverPort, viaProxy)
	if err != nil {
		return entry{}, err
	}
	return entry{spec: upstream.Spec{Kind: upstream.KindDNSCrypt, Addr: addr, ProviderName: o.ProviderName, ProviderKey: pk},
		from: "--resolver-address=" + plain}, nil
}

// overrideAddress applies a plain -r (if not "") and --resolver-port (if
// not 0) to the one DNSCrypt resolver e, as 1.x did.
func overrideAddress(e *entry, plain string, port int, viaProxy bool) error {
	if e.spec.Kind != upstream.KindDNSCrypt {
		if plain != "" {
			return setupErrorf("%s gives the address of a %v resolver: drop --resolver-address", e.from, e.spec.Kind)
		}
		return setupErrorf("--resolver-port applies to DNSCrypt resolvers: give the port in %s", e.from)
	}
	if plain != "" {
		addr, err := resolverAddr(plain, port, viaProxy)
		if err != nil {
			return err
		}
		e.spec.Addr = addr
	} else if port != 0 {
		host, _, err := net.SplitHostPort(e.spec.Addr)
		if err != nil {
			return setupErrorf("Unsupported resolver address: %s", e.spec.Addr)
		}
		e.spec.Addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return nil
}

// checkEntry checks a resolver: a DNSCrypt one's provider name by 1.x's
// rule, another's address for the route (a host name only through a
// proxy).
func checkEntry(e *entry, viaProxy bool) error {
	if e.spec.Kind == upstream.KindDNSCrypt {
		return checkProviderName(e.spec.ProviderName)
	}
	if err := e.spec.Check(viaProxy); err != nil {
		if errors.Is(err, upstream.ErrHostName) {
			return setupErrorf("Unsupported resolver: %s: %s is a host name, which works only through --proxy or --tor (they resolve it: never a local lookup)",
				e.spec.String(), e.spec.Addr)
		}
		return setupErrorf("Unsupported resolver: %s: %s", e.spec.String(), userText(err))
	}
	return nil
}

// rowNotes notes what a list says of a resolver, in 1.x's words; with
// several resolvers, the good news names it too.
func (c *chosen) rowNotes(res stamps.Resolver, several bool) {
	who := ""
	if several {
		who = " [" + res.Name + "]:"
	}
	if res.DNSSEC {
		c.note(slog.LevelInfo, "+%s DNS Security Extensions are supported", who)
	} else {
		c.note(slog.LevelInfo, "- [%s] does not support DNS Security Extensions", res.Name)
	}
	if res.Namecoin {
		c.note(slog.LevelInfo, "+%s Namecoin domains can be resolved", who)
	}
	if res.NoLogs {
		c.note(slog.LevelInfo, "+%s Provider supposedly doesn't keep logs", who)
	} else {
		c.note(slog.LevelWarn, "- [%s] logs your activity - a different provider might be better a choice if privacy is a concern", res.Name)
	}
}

// resolverLists reads the lists -R looks in, each at most once and only
// when a lookup gets that far: -L's, or else the built-in list and then
// the system lists.
type resolverLists struct {
	o      *Options
	env    *Env
	loaded bool
	src    string // the first list's name
	list   []stamps.Resolver
	bad    error // its rows that could not be used
	system map[string]systemList
}

type systemList struct {
	list []stamps.Resolver // nil: missing or unusable
	bad  error
}

// first returns -L's list, or the built-in one.
func (l *resolverLists) first() error {
	if l.loaded {
		return nil
	}
	l.src, l.list = builtinListName, stamps.Default()
	if l.o.ResolversList != "" {
		l.src = l.o.ResolversList
		list, err := readResolversList(l.env, l.src)
		if list == nil && err != nil {
			return err
		}
		l.list, l.bad = list, err
	}
	l.loaded = true
	return nil
}

// lookup finds name in -L's list, or else in the built-in list and then
// the system lists.
func (l *resolverLists) lookup(name string) (stamps.Resolver, error) {
	if err := l.first(); err != nil {
		return stamps.Resolver{}, err
	}
	var tried []string
	// find looks in one list; bad holds the rows it could not use.
	find := func(src string, list []stamps.Resolver, bad error) (stamps.Resolver, bool, error) {
		tried = append(tried, "["+src+"]")
		if res, err := stamps.Lookup(list, name); err == nil {
			return res, true, nil
		}
		// The row may exist but be unusable.
		for _, e := range joinedErrors(bad) {
			if re, ok := errors.AsType[*stamps.RowError](e); ok && strings.EqualFold(re.Name, name) {
				return stamps.Resolver{}, false, setupErrorf("Resolver [%s] in the [%s] list cannot be used: %s", name, src, userText(re))
			}
		}
		return stamps.Resolver{}, false, nil
	}
	if res, found, err := find(l.src, l.list, l.bad); found || err != nil {
		return res, err
	}
	if l.o.ResolversList == "" {
		for _, path := range l.env.SystemLists {
			sl, ok := l.system[path]
			if !ok {
				sl.list, sl.bad = readResolversList(l.env, path)
				if l.system == nil {
					l.system = map[string]systemList{}
				}
				l.system[path] = sl
			}
			if sl.list == nil {
				continue // missing or unusable: 1.x's packages may not be installed
			}
			if res, found, err := find(path, sl.list, sl.bad); found || err != nil {
				return res, err
			}
		}
	}
	return stamps.Resolver{}, setupErrorf("No resolver named [%s] found in the %s list", name, strings.Join(tried, " or "))
}

// random draws n distinct resolvers of -L's or the built-in list by 1.x's
// rules for "-R random", none of them one of taken.
func (l *resolverLists) random(n int, taken []entry) ([]stamps.Resolver, error) {
	if err := l.first(); err != nil {
		return nil, err
	}
	cands := slices.DeleteFunc(stamps.Candidates(l.list), func(row stamps.Resolver) bool {
		e, err := rowEntry(row, "")
		return err == nil && slices.ContainsFunc(taken, func(t entry) bool { return sameResolver(&t.spec, &e.spec) })
	})
	picks, err := stamps.RandomN(cands, n, nil)
	if err != nil {
		if len(cands) == 0 {
			return nil, setupErrorf("No suitable candidates found for a random selection in the [%s] list", l.src)
		}
		return nil, setupErrorf("Too few suitable candidates for a random selection of %d in the [%s] list: %d "+
			"(IPv4, DNSSEC and no logs not \"no\", and not named otherwise)", n, l.src, len(cands))
	}
	return picks, nil
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
