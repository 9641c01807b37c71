package names

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinel errors. Every error this package returns wraps one of them.
var (
	// ErrSuffix reports a forwarded suffix in Config that is not a domain
	// name this package accepts.
	ErrSuffix = errors.New("names: invalid domain suffix")

	// ErrMalformed reports an answer from which Filter had to remove records
	// but which it could not parse or rebuild. The caller should answer
	// SERVFAIL rather than pass the answer on.
	ErrMalformed = errors.New("names: malformed answer")
)

// Config configures a Policy. The zero value answers the special-use names
// locally, forwards everything else and filters nothing.
type Config struct {
	// Forward lists domain suffixes that go upstream even when they are
	// special-use names or reverse zones this package would answer itself
	// (a lab zone, a company's .internal domain, a private reverse zone),
	// like unbound's private-domain. A name equal to or under one of them
	// is forwarded, and Filter leaves the addresses in its answers alone.
	// Names are given in presentation form, with or without the final dot,
	// in any case ("corp.internal", "10.in-addr.arpa."). "." forwards
	// every name and so turns both features off.
	Forward []string

	// FilterInternal makes Filter remove internal addresses (private,
	// loopback, link-local, ...) from answers to names that are not
	// forwarded suffixes: Tor's ClientDNSRejectInternalAddresses. When it
	// is false Filter passes every answer unchanged.
	FilterInternal bool
}

// Policy decides which queries are answered locally and which addresses are
// removed from upstream answers. It is immutable and safe for concurrent use.
type Policy struct {
	// forward holds the forwarded suffixes in lower-case wire form;
	// depths lists their label counts, ascending, without duplicates.
	forward map[string]struct{}
	depths  []int
	all     bool // the root is forwarded: every name is
	filter  bool
}

// New validates cfg and returns its Policy. An invalid suffix gives an error
// wrapping ErrSuffix that names it.
func New(cfg Config) (*Policy, error) {
	p := &Policy{forward: make(map[string]struct{}), filter: cfg.FilterInternal}
	for _, s := range cfg.Forward {
		w, err := suffixWire(s)
		if err != nil {
			return nil, err
		}
		if len(w) == 1 {
			p.all = true
			continue
		}
		p.forward[string(w)] = struct{}{}
		if d := countLabels(w); !slices.Contains(p.depths, d) {
			p.depths = append(p.depths, d)
		}
	}
	slices.Sort(p.depths)
	return p, nil
}

// suffixWire checks a forwarded suffix and returns it in lower-case wire form.
// Labels are letters, digits, '-' and '_' (internationalised names go in
// their xn-- form), 1 to 63 bytes long, 253 characters at most in all: the
// names a user can type in a flag, without escapes.
func suffixWire(s string) ([]byte, error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrSuffix, s, why) }
	name := strings.TrimSuffix(s, ".")
	switch {
	case s == "":
		return nil, bad("empty (use \".\" for every name)")
	case s == ".":
		return []byte{0}, nil
	case len(name) > 253:
		return nil, bad("longer than 253 characters")
	}
	w := make([]byte, 0, len(name)+2)
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return nil, bad("empty label")
		}
		if len(label) > 63 {
			return nil, bad("label longer than 63 characters")
		}
		w = append(w, byte(len(label)))
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case c >= 0x80:
				return nil, bad("not ASCII (write an internationalised name in its xn-- form)")
			default:
				return nil, bad(fmt.Sprintf("character %q (letters, digits, '-' and '_' only)", c))
			}
			w = append(w, c)
		}
	}
	return append(w, 0), nil
}

// countLabels returns the number of labels of the uncompressed wire name w,
// the root label not counted.
func countLabels(w []byte) int {
	n := 0
	for i := 0; i < len(w) && w[i] != 0; i += 1 + int(w[i]) {
		n++
	}
	return n
}

// forwarded reports whether n is equal to or under a forwarded suffix.
func (p *Policy) forwarded(n *wireName) bool {
	if p.all {
		return true
	}
	for _, d := range p.depths {
		if d > n.labels {
			break
		}
		if _, ok := p.forward[string(n.suffix(d))]; ok {
			return true
		}
	}
	return false
}

// exempt reports whether Filter leaves the answers for n alone: n is
// forwarded by the user or would be answered locally.
func (p *Policy) exempt(n *wireName) bool {
	return p.forwarded(n) || lookupZone(n) != nil
}
