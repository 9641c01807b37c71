package names

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// q describes a client query for the tests.
type q struct {
	name   string
	qtype  uint16
	qclass uint16 // 0: IN
	rd, cd bool
	edns   bool   // add an OPT record
	size   uint16 // its payload size
	do     bool
	ver    uint8 // its version
	cookie bool  // and a client cookie option
}

func (c q) msg() *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(c.name, c.qtype)
	m.Id = 0xBEEF
	m.RecursionDesired = c.rd
	m.CheckingDisabled = c.cd
	if c.qclass != 0 {
		m.Question[0].Qclass = c.qclass
	}
	if c.edns {
		m.SetEdns0(c.size, c.do)
		opt := m.IsEdns0()
		opt.SetVersion(c.ver)
		if c.cookie {
			opt.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		}
	}
	return m
}

func (c q) pack(tb testing.TB) []byte { return pack(tb, c.msg()) }

func pack(tb testing.TB, m *dns.Msg) []byte {
	tb.Helper()
	b, err := m.Pack()
	if err != nil {
		tb.Fatalf("packing: %v", err)
	}
	return b
}

func unpack(tb testing.TB, b []byte) *dns.Msg {
	tb.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		tb.Fatalf("unpacking %x: %v", b, err)
	}
	return m
}

func mustPolicy(tb testing.TB, cfg Config) *Policy {
	tb.Helper()
	p, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(%+v): %v", cfg, err)
	}
	return p
}

// rrs returns the records in presentation form, tabs as in miekg/dns.
func rrs(s []dns.RR) []string {
	var out []string
	for _, r := range s {
		out = append(out, r.String())
	}
	return out
}

// mustRR parses records written with spaces for the tables.
func mustRR(tb testing.TB, ss ...string) []dns.RR {
	tb.Helper()
	var out []dns.RR
	for _, s := range ss {
		r, err := dns.NewRR(s)
		if err != nil {
			tb.Fatalf("parsing %q: %v", s, err)
		}
		out = append(out, r)
	}
	return out
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// soa is unbound's SOA record for a locally served zone.
func soa(apex string) string {
	return apex + " 10800 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 10800"
}

// ptrName returns the reverse name of an address, as dns.ReverseAddr does.
func ptrName(tb testing.TB, addr string) string {
	tb.Helper()
	n, err := dns.ReverseAddr(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// parsedName returns name (presentation form) as a wireName.
func parsedName(tb testing.TB, name string) *wireName {
	tb.Helper()
	buf := make([]byte, 256)
	end, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		tb.Fatalf("packing %q: %v", name, err)
	}
	n := new(wireName)
	if _, ok := n.parse(buf[:end], 0); !ok {
		tb.Fatalf("%q does not parse", name)
	}
	return n
}
