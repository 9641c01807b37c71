package cli

import (
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jedisct1/go-dnsstamps"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

// dotStamp is a DNS-over-TLS resolver's stamp, the "dot" row of setCSV.
var dotStamp = stamps.Format(dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeTLS, ServerAddrStr: "192.0.2.15", ProviderName: "dns.dot.example"})

// setCSV has three candidates for "-R random" (one, two, three), one
// resolver that logs and one of another kind. The URL column and the
// provider names differ, to show which one names the operator.
var setCSV = `Name,URL,DNSSEC validation,No logs,Resolver address,Provider name,Provider public key,DNS stamp
one,https://operator-a.example/,yes,yes,192.0.2.11:443,2.dnscrypt-cert.one.example,` + scalewayKey + `,
two,https://www.operator-a.example/two,yes,yes,192.0.2.12:443,2.dnscrypt-cert.two.example,` + scalewayKey + `,
three,,yes,yes,192.0.2.13:443,2.dnscrypt-cert.three.example.net,` + scalewayKey + `,
logs,,yes,no,192.0.2.14:443,2.dnscrypt-cert.logs.example,` + scalewayKey + `,
dot,,no,yes,,,,` + dotStamp + `
`

// dnscryptStamp is the stamp of a DNSCrypt resolver at addr.
func dnscryptStamp(t *testing.T, addr, provider string) string {
	t.Helper()
	pk, err := stamps.ParseProviderKey(scalewayKey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stamps.NewDNSCrypt(addr, provider, pk, 0)
	if err != nil {
		t.Fatal(err)
	}
	return st.String()
}

// resolverIDs names each resolver by kind and address.
func resolverIDs(specs []upstream.Spec) []string {
	var ids []string
	for _, s := range specs {
		ids = append(ids, s.Kind.String()+" "+s.Addr)
	}
	return ids
}

// TestPlanSeveralResolvers: every way of naming several resolvers, mixed,
// in the order stamps, -R, -r/-N/-k, URL forms; operators from the list's
// URL column (else its provider name), none for stamps and URL forms.
func TestPlanSeveralResolvers(t *testing.T) {
	other := dnscryptStamp(t, "192.0.2.21:8443", "2.dnscrypt-cert.other.example")
	key := []string{"-N", "2.dnscrypt-cert.x.example", "-k", scalewayKey}
	for _, tt := range []struct {
		name  string
		args  []string
		ids   []string
		names []string // Spec.Name, "" for none
		ops   []string // nil: Config.Operators nil
	}{
		{"two stamps", []string{"--stamp=" + scalewayStmp, "--stamp", other},
			[]string{"dnscrypt " + scalewayAddr, "dnscrypt 192.0.2.21:8443"}, []string{"", ""}, nil},
		{"a DNSCrypt and a DoT stamp", []string{"--stamp=" + other, "--stamp=" + dotStamp},
			[]string{"dnscrypt 192.0.2.21:8443", "tls 192.0.2.15:853"}, []string{"", "dns.dot.example"}, nil},
		{"-R list", []string{"-R", "one,two,three", "-L", "/mem/set.csv"},
			[]string{"dnscrypt 192.0.2.11:443", "dnscrypt 192.0.2.12:443", "dnscrypt 192.0.2.13:443"}, []string{"one", "two", "three"},
			[]string{"operator-a.example", "operator-a.example", "example.net"}},
		{"-R list with spaces and case", []string{"--resolver-name= ONE , dot", "-L", "/mem/set.csv"},
			[]string{"dnscrypt 192.0.2.11:443", "tls 192.0.2.15:853"}, []string{"one", "dot"}, []string{"operator-a.example", "dot.example"}},
		{"-R built-in then system list", []string{"-R", "scaleway-fr,old-one"},
			[]string{"dnscrypt " + scalewayAddr, "dnscrypt 192.0.2.9:443"}, []string{"scaleway-fr", "old-one"},
			[]string{"scaleway.com", "old.example"}},
		{"URL forms", []string{"-r", "tls://192.0.2.1", "--resolver-address=https://192.0.2.2/q", "-r", "tcp://[2001:db8::1]"},
			[]string{"tls 192.0.2.1:853", "https 192.0.2.2:443", "tcp [2001:db8::1]:53"},
			[]string{"tls://192.0.2.1", "https://192.0.2.2/q", "tcp://[2001:db8::1]"}, nil},
		{"1.x DNSCrypt form and a URL form", append([]string{"-r", "tcp://192.0.2.3", "-r", "192.0.2.1", "--resolver-port=5443"}, key...),
			[]string{"dnscrypt 192.0.2.1:5443", "tcp 192.0.2.3:53"}, []string{"", "tcp://192.0.2.3"}, nil},
		{"stamp, list, URL", []string{"-r", "tls://192.0.2.1", "-R", "one", "-L", "/mem/set.csv", "--stamp=" + other},
			[]string{"dnscrypt 192.0.2.21:8443", "dnscrypt 192.0.2.11:443", "tls 192.0.2.1:853"}, []string{"", "one", "tls://192.0.2.1"},
			[]string{"", "operator-a.example", ""}},
		{"one stamp whose address -r forces, and a URL form", []string{"--stamp=" + scalewayStmp, "-r", "192.0.2.7", "-r", "tls://192.0.2.1"},
			[]string{"dnscrypt 192.0.2.7:443", "tls 192.0.2.1:853"}, []string{"", "tls://192.0.2.1"}, nil},
		{"URL forms through Tor by name", []string{"--tor", "-r", "tls://dns.example", "-r", "https://abc.onion/dns-query"},
			[]string{"tls dns.example:853", "https abc.onion:443"}, []string{"tls://dns.example", "https://abc.onion/dns-query"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := plan(t, tt.args...).Proxy
			ids := resolverIDs(c.Resolvers)
			if !slices.Equal(ids, tt.ids) {
				t.Errorf("resolvers: got %q, want %q", ids, tt.ids)
			}
			var names []string
			for _, s := range c.Resolvers {
				names = append(names, s.Name)
			}
			if !slices.Equal(names, tt.names) {
				t.Errorf("names: got %q, want %q", names, tt.names)
			}
			if !slices.Equal(c.Operators, tt.ops) {
				t.Errorf("operators: got %q, want %q", c.Operators, tt.ops)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestPlanRandomPlace: the random picks are distinct candidates, none
// of them named otherwise, after the resolvers named before them.
func TestPlanRandomPlace(t *testing.T) {
	all3 := []string{"dnscrypt 192.0.2.11:443", "dnscrypt 192.0.2.12:443", "dnscrypt 192.0.2.13:443"}
	for _, tt := range []struct {
		args  []string
		first []string // the resolvers before the picks
	}{
		{[]string{"-R", "random:3", "-L", "/mem/set.csv"}, nil},
		{[]string{"-R", "one,RANDOM:2", "-L", "/mem/set.csv"}, all3[:1]},
		{[]string{"-R", "random:2", "-L", "/mem/set.csv", "--stamp=" + dnscryptStamp(t, "192.0.2.12:443", "2.dnscrypt-cert.two.example")}, all3[1:2]},
	} {
		for range 20 {
			ids := resolverIDs(plan(t, tt.args...).Proxy.Resolvers)
			if len(ids) != 3 || !slices.Equal(ids[:len(tt.first)], tt.first) || !slices.Equal(slices.Sorted(slices.Values(ids)), all3) {
				t.Fatalf("%q: got %q, want %q first, then the others of %q", tt.args, ids, tt.first, all3)
			}
		}
	}
}

// TestPlanRandomNotes: "-R random" keeps 1.x's line; several random
// resolvers are listed, and what the list says of each names it.
func TestPlanRandomNotes(t *testing.T) {
	p := plan(t, "-R", "random:3", "-L", "/mem/set.csv")
	var picked string
	for _, n := range p.Notes {
		if s, ok := strings.CutPrefix(n.Msg, "Randomly chosen resolvers: "); ok {
			picked = s
		}
	}
	got := strings.Split(picked, ", ")
	slices.Sort(got)
	if !slices.Equal(got, []string{"[one]", "[three]", "[two]"}) {
		t.Errorf("random:3: notes %+v", p.Notes)
	}
	for _, name := range []string{"one", "two", "three"} {
		if !hasNote(p, slog.LevelInfo, "+ ["+name+"]: DNS Security Extensions are supported") ||
			!hasNote(p, slog.LevelInfo, "+ ["+name+"]: Provider supposedly doesn't keep logs") {
			t.Errorf("random:3: no notes for %s in %+v", name, p.Notes)
		}
	}
	p = plan(t, "-R", "random", "-L", "/mem/random.csv")
	if !hasNote(p, slog.LevelInfo, "Randomly chosen resolver: [good]") || !hasNote(p, slog.LevelInfo, "+ DNS Security Extensions are supported") {
		t.Errorf("random: notes %+v", p.Notes)
	}
	p = plan(t, "-R", "one,logs", "-L", "/mem/set.csv")
	if !hasNote(p, slog.LevelWarn, "- [logs] logs your activity") || !hasNote(p, slog.LevelInfo, "+ [one]: Provider supposedly") {
		t.Errorf("one,logs: notes %+v", p.Notes)
	}
}

// TestPlanRandomSpread: random:2 of three candidates draws every pair.
func TestPlanRandomSpread(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		ids := resolverIDs(plan(t, "-R", "random:2", "-L", "/mem/set.csv").Proxy.Resolvers)
		if len(ids) != 2 || ids[0] == ids[1] {
			t.Fatalf("random:2: got %q", ids)
		}
		slices.Sort(ids)
		seen[strings.Join(ids, " ")] = true
	}
	if len(seen) != 3 {
		t.Errorf("random:2 of 3 candidates, 200 times: got the pairs %v, want all 3", seen)
	}
}

func TestPlanSeveralResolversErrors(t *testing.T) {
	other := dnscryptStamp(t, "192.0.2.21:8443", "2.dnscrypt-cert.other.example")
	key := []string{"-N", "2.dnscrypt-cert.x.example", "-k", scalewayKey}
	var many []string
	for i := range 65 {
		many = append(many, "-r", "tcp://192.0.2."+strconv.Itoa(i+1))
	}
	for _, tt := range []struct {
		name string
		args []string
		msg  string
	}{
		{"two plain -r", append([]string{"-r", "192.0.2.1", "-r", "192.0.2.2"}, key...),
			"--resolver-address is given twice with a plain address ([192.0.2.1] and [192.0.2.2]): a plain address is that of the one DNSCrypt resolver of --provider-name and --provider-key"},
		{"-R twice", []string{"-R", "one", "-R", "two", "-L", "/mem/set.csv"}, "--resolver-name is given 2 times ([one] [two]): give several resolvers in one, -R NAME1,NAME2"},
		{"-R empty name", []string{"-R", "one,,two"}, "Invalid resolver name list: [one,,two] (an empty name)"},
		{"-R trailing comma", []string{"-R", "one,"}, "(an empty name)"},
		{"-R random twice", []string{"-R", "random,random:2"}, "random given twice: use random:N"},
		{"-R random:0", []string{"-R", "random:0"}, "Invalid resolver name: [random:0] (random:N wants a number N from 1 up)"},
		{"-R random:x", []string{"-R", "random:x"}, "Invalid resolver name: [random:x]"},
		{"-R random:-1", []string{"-R", "random:-1"}, "Invalid resolver name: [random:-1]"},
		{"-R random:4 of 3", []string{"-R", "random:4", "-L", "/mem/set.csv"},
			"Too few suitable candidates for a random selection of 4 in the [/mem/set.csv] list: 3 (IPv4, DNSSEC and no logs not \"no\", and not named otherwise)"},
		{"-R random:3 with one named", []string{"-R", "two,random:3", "-L", "/mem/set.csv"}, "Too few suitable candidates for a random selection of 3 in the [/mem/set.csv] list: 2"},
		{"-R random:2 of 1", []string{"-R", "random:2", "-L", "/mem/random.csv"}, "Too few suitable candidates for a random selection of 2 in the [/mem/random.csv] list: 1"},
		{"-R random:2 of none", []string{"-R", "random:2", "-L", "/mem/badrow.csv"}, "No suitable candidates found for a random selection in the [/mem/badrow.csv] list"},
		{"same stamp twice", []string{"--stamp=" + other, "--stamp=" + other}, "Resolver 192.0.2.21:8443 is given twice (--stamp and --stamp): name each resolver once"},
		{"a stamp and a list name", []string{"--stamp=" + scalewayStmp, "-R", "scaleway-fr"}, "Resolver scaleway-fr is given twice (--stamp and -R scaleway-fr)"},
		{"a name twice", []string{"-R", "one,ONE", "-L", "/mem/set.csv"}, "Resolver one is given twice (-R one and -R one)"},
		{"a URL twice", []string{"-r", "tls://192.0.2.1", "-r", "tls://192.0.2.1:853"}, "Resolver tls://192.0.2.1:853 is given twice"},
		{"-r forced onto one of two", []string{"--stamp=" + scalewayStmp, "--stamp=" + other, "-r", "192.0.2.9"},
			"A plain --resolver-address=192.0.2.9 sets the address of one DNSCrypt resolver, but 2 are named (--stamp, --stamp)"},
		{"-r forced onto a list", []string{"-R", "one,two", "-L", "/mem/set.csv", "-r", "192.0.2.9"},
			"but 2 are named (-R one, -R two)"},
		{"--resolver-port with two", []string{"--stamp=" + scalewayStmp, "--stamp=" + other, "--resolver-port=5353"},
			"--resolver-port sets the port of one DNSCrypt resolver, but 2 are named"},
		{"--resolver-port with URL forms", []string{"-r", "tls://192.0.2.1", "--resolver-port=853"},
			"--resolver-port applies to DNSCrypt resolvers: give the port in --resolver-address=tls://192.0.2.1"},
		{"-N -k with a stamp and URL forms", []string{"--stamp=" + other, "-r", "tls://192.0.2.1", "-N", "2.x", "-k", scalewayKey}, "--stamp already gives the provider name and key"},
		{"plain -r with a DoT stamp and a URL", []string{"--stamp=" + dotStamp, "-r", "192.0.2.9", "-r", "tls://192.0.2.1"},
			"--stamp gives the address of a tls resolver: drop --resolver-address"},
		{"a host name in a URL form directly", []string{"--stamp=" + other, "-r", "tls://dns.example"}, "Unsupported resolver: tls://dns.example"},
		{"65 resolvers", many, "Invalid configuration: 65 resolvers, at most 64"},
		{"--selection with one", []string{"--selection=rotate", "--stamp=" + other}, "--selection needs several resolvers"},
		{"--hedge-other-resolver with one", []string{"--hedge-other-resolver", "-R", "one", "-L", "/mem/set.csv"}, "--hedge-other-resolver needs several resolvers"},
		{"--hedge-other-resolver without hedges", []string{"--hedge=no", "--hedge-other-resolver=yes", "-R", "one,two", "-L", "/mem/set.csv"},
			"--hedge-other-resolver says where hedges go, and --hedge is off"},
		{"--selection with the 1.x form", append([]string{"--selection=fastest", "-r", "192.0.2.1"}, key...), "--selection needs several resolvers"},
	} {
		t.Run(tt.name, func(t *testing.T) { wantPlanError(t, tt.args, ExitFailure, tt.msg) })
	}
}

// TestPlanSetOptions: --selection, --hedge and --hedge-other-resolver in
// the configuration, and the line that describes the set at start.
func TestPlanSetOptions(t *testing.T) {
	two := []string{"-R", "one,two", "-L", "/mem/set.csv"}
	for _, tt := range []struct {
		name             string
		args             []string
		sel              proxy.Selection
		hedge, other     proxy.Toggle
		note             string // "" for none
		resolversInNotes bool
	}{
		{"1.x: one resolver", []string{"-R", "one", "-L", "/mem/set.csv"}, proxy.SelectAuto, proxy.Auto, proxy.Auto, "", false},
		{"1.x through Tor", []string{"--tor", "-R", "one", "-L", "/mem/set.csv"}, proxy.SelectAuto, proxy.Auto, proxy.Auto, "", false},
		{"two directly", two, proxy.SelectAuto, proxy.Auto, proxy.Auto,
			"Using 2 resolvers (one, two): fastest selection, hedging to another resolver", true},
		{"two through Tor", append([]string{"--tor"}, two...), proxy.SelectAuto, proxy.Auto, proxy.Auto,
			"Using 2 resolvers (one, two): rotate selection, hedging to the same resolver over another circuit", true},
		{"rotate without hedging", append([]string{"--selection=rotate", "--hedge=no"}, two...), proxy.SelectRotate, proxy.Off, proxy.Auto,
			"Using 2 resolvers (one, two): rotate selection, no hedging", true},
		{"fastest through a proxy, hedging to another", append([]string{"--proxy=socks5://127.0.0.1:1080", "--selection=fastest", "--hedge-other-resolver"}, two...),
			proxy.SelectFastest, proxy.Auto, proxy.On, "Using 2 resolvers (one, two): fastest selection, hedging to another resolver", true},
		{"directly, hedging to the same", append([]string{"--hedge", "--hedge-other-resolver=false"}, two...), proxy.SelectAuto, proxy.On, proxy.Off,
			"Using 2 resolvers (one, two): fastest selection, hedging to the same resolver", true},
		{"one resolver, hedged", []string{"--hedge", "--stamp=" + scalewayStmp}, proxy.SelectAuto, proxy.On, proxy.Auto,
			"Using 1 resolver (" + scalewayAddr + "): hedging to the same resolver", true},
		{"one resolver, hedged through Tor", []string{"--tor", "--hedge=yes", "--stamp=" + scalewayStmp}, proxy.SelectAuto, proxy.On, proxy.Auto,
			"Using 1 resolver (" + scalewayAddr + "): hedging to the same resolver over another circuit", true},
		{"one resolver, --hedge=no", []string{"--hedge=no"}, proxy.SelectAuto, proxy.Off, proxy.Auto, "", false},
		{"--test: no set line", append([]string{"--test=0"}, two...), proxy.SelectAuto, proxy.Auto, proxy.Auto, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(t, tt.args...)
			c := p.Proxy
			if c.Selection != tt.sel || c.Hedge != tt.hedge || c.HedgeOther != tt.other {
				t.Errorf("got selection %v hedge %v other %v, want %v %v %v", c.Selection, c.Hedge, c.HedgeOther, tt.sel, tt.hedge, tt.other)
			}
			var lines []string
			for _, n := range p.Notes {
				if strings.HasPrefix(n.Msg, "Using ") {
					lines = append(lines, n.Msg)
				}
			}
			if tt.note == "" && len(lines) > 0 || tt.note != "" && (len(lines) != 1 || lines[0] != tt.note) {
				t.Errorf("set line: got %q, want %q", lines, tt.note)
			}
		})
	}
}

// TestPlanSeveralResolversFromConfigFile: the properties repeated, and
// the command line replacing the file's values of one option at a time.
func TestPlanSeveralResolversFromConfigFile(t *testing.T) {
	other := dnscryptStamp(t, "192.0.2.21:8443", "2.dnscrypt-cert.other.example")
	third := dnscryptStamp(t, "192.0.2.22:443", "2.dnscrypt-cert.third.example")
	conf := t.TempDir() + "/set.conf"
	if err := os.WriteFile(conf, []byte("Stamp "+scalewayStmp+"\nStamp "+other+"\nResolverName one,two\nResolversList /mem/set.csv\n"+
		"ResolverAddress tls://192.0.2.1\nResolverAddress tcp://192.0.2.2\nSelection rotate\nHedge yes\nHedgeOtherResolver yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		ids  []string
		sel  proxy.Selection
		err  string
	}{
		{"the file alone", []string{conf},
			[]string{"dnscrypt " + scalewayAddr, "dnscrypt 192.0.2.21:8443", "dnscrypt 192.0.2.11:443", "dnscrypt 192.0.2.12:443", "tls 192.0.2.1:853", "tcp 192.0.2.2:53"},
			proxy.SelectRotate, ""},
		{"--stamp replaces the file's stamps", []string{conf, "--stamp=" + third},
			[]string{"dnscrypt 192.0.2.22:443", "dnscrypt 192.0.2.11:443", "dnscrypt 192.0.2.12:443", "tls 192.0.2.1:853", "tcp 192.0.2.2:53"},
			proxy.SelectRotate, ""},
		{"-R and -r replace the file's", []string{"-R", "three", conf, "-r", "https://192.0.2.3", "--selection=fastest"},
			[]string{"dnscrypt " + scalewayAddr, "dnscrypt 192.0.2.21:8443", "dnscrypt 192.0.2.13:443", "https 192.0.2.3:443"},
			proxy.SelectFastest, ""},
		{"1.x -r -N -k over the file's DNSCrypt address", []string{conf, "-r", "192.0.2.50", "-N", "2.x", "-k", scalewayKey}, nil, 0,
			"--stamp already gives the provider name and key"},
		{"--hedge=no against the file's HedgeOtherResolver", []string{conf, "--hedge=no"}, nil, 0,
			"--hedge-other-resolver says where hedges go, and --hedge is off"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Parse(tt.args)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			p, err := o.Plan(testEnv())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("Plan: got %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if ids := resolverIDs(p.Proxy.Resolvers); !slices.Equal(ids, tt.ids) {
				t.Errorf("got %q\nwant %q", ids, tt.ids)
			}
			if p.Proxy.Selection != tt.sel || p.Proxy.Hedge != proxy.On || p.Proxy.HedgeOther != proxy.On {
				t.Errorf("got selection %v hedge %v other %v", p.Proxy.Selection, p.Proxy.Hedge, p.Proxy.HedgeOther)
			}
		})
	}
}

// TestPlanOneResolverUnchanged: the 1.x ways of naming one resolver give
// the configuration they gave before there were sets: one resolver, no
// set option, nothing more logged.
func TestPlanOneResolverUnchanged(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"-R", "cisco", "-L", csvPath, "-r", "192.0.2.7:5353"},
		{"-r", "192.0.2.1", "-N", "2.dnscrypt-cert.example.com", "-k", scalewayKey},
		{"--stamp", scalewayStmp, "-r", "127.0.0.1:4443"},
		{"-R", "random", "-L", "/mem/random.csv"},
		{"--tcp-only", "--daemonize", "--user=dnscrypt", "--local-port=5800"},
	} {
		p := plan(t, args...)
		c := p.Proxy
		if len(c.Resolvers) != 1 || c.Resolvers[0].Kind != upstream.KindDNSCrypt || c.Selection != proxy.SelectAuto ||
			c.Hedge != proxy.Auto || c.HedgeOther != proxy.Auto {
			t.Errorf("%q: got %+v", args, c)
		}
		if len(c.Operators) > 1 {
			t.Errorf("%q: operators %q", args, c.Operators)
		}
		for _, n := range p.Notes {
			if strings.HasPrefix(n.Msg, "Using ") || strings.Contains(n.Msg, "]: ") {
				t.Errorf("%q: note %q", args, n.Msg)
			}
		}
	}
	// The same Spec as before: name from the list, address forced.
	want := upstream.Spec{Kind: upstream.KindDNSCrypt, Name: "cisco", Addr: "192.0.2.7:5353", ProviderName: "2.dnscrypt-cert.opendns.com"}
	got := plan(t, "-R", "cisco", "-L", csvPath, "-r", "192.0.2.7:5353").Proxy.Resolvers[0]
	got.ProviderKey = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("-R cisco -r: got %+v, want %+v", got, want)
	}
}
