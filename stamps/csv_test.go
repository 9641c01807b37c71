package stamps

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jedisct1/go-dnsstamps"
)

const (
	ciscoKey   = "B735:1140:206F:225D:3E2B:D822:D7FD:691E:A1C3:3CC8:D666:8D0C:BE04:BFAB:CA43:FB79"
	cryptoKey  = "3133:72AD:5956:32C2:416B:872F:098F:851B:DDB9:6528:4C6C:BE9A:4F19:0964:30DB:A95A"
	d0wnBGKey  = "423C:D823:B3EA:2015:F027:ECF1:5704:3EB7:764A:D02D:9447:56E6:51FD:D06F:E571:2FCC"
	euNLKey    = "67C0:0F2C:21C5:5481:45DD:7CB4:6A27:1AF2:EB96:9931:40A3:09B6:2B8D:1653:1185:9C66"
	orgFRKey   = "E801:B84E:A606:BFB0:BAC0:CE43:445B:B15E:BA64:B02F:A3C4:AA31:AE10:636A:0790:324D"
	csvHeader  = "Name,Full name,Description,Location,Coordinates,URL,Version,DNSSEC validation,No logs,Namecoin,Resolver address,Provider name,Provider public key,Provider public key TXT record\n"
	dnssecProp = dnsstamps.ServerInformalPropertyDNSSEC
	noLogProp  = dnsstamps.ServerInformalPropertyNoLog
)

func dnscryptStamp(t testing.TB, addr, provider, key string, p dnsstamps.ServerInformalProperties) dnsstamps.ServerStamp {
	t.Helper()
	return dnsstamps.ServerStamp{
		Proto:         dnsstamps.StampProtoTypeDNSCrypt,
		Props:         p,
		ServerAddrStr: addr,
		ServerPk:      mustHex(t, strings.ToLower(strings.ReplaceAll(key, ":", ""))),
		ProviderName:  provider,
	}
}

// fixtureWant is what testdata/resolvers-1.9.5.csv holds, in file order.
func fixtureWant(t testing.TB) []Resolver {
	list := []Resolver{
		{Name: "cisco", FullName: "Cisco OpenDNS", Description: "Remove your DNS blind spot", Location: "Anycast",
			URL:   "https://www.opendns.com",
			Stamp: dnscryptStamp(t, "208.67.220.220:443", "2.dnscrypt-cert.opendns.com", ciscoKey, 0)},
		{Name: "cisco-ipv6", FullName: "Cisco OpenDNS over IPv6", Description: "Cisco OpenDNS IPv6 sandbox", Location: "Anycast",
			URL:   "https://www.opendns.com/about/innovations/ipv6/",
			Stamp: dnscryptStamp(t, "[2620:0:ccc::2]:443", "2.dnscrypt-cert.opendns.com", ciscoKey, 0)},
		{Name: "cs-uswest", FullName: "cryptostorm.is Seattle, WA (US) DNSCrypt server (port 443)", Description: "provided by cryptostorm.is",
			Location: "Seattle, WA", URL: "https://cryptostorm.is", NoLogs: true, Namecoin: true,
			Stamp: dnscryptStamp(t, "76.164.234.11:443", "2.dnscrypt-cert.cryptostorm.is", cryptoKey, noLogProp)},
		{Name: "d0wn-bg-ns1", FullName: "OpenNIC Resolver Bulgaria 01 - d0wn", Description: "Server provided by Martin 'd0wn' Albus",
			Location: "Bulgaria", URL: "https://dns.d0wn.biz", NoLogs: true, Namecoin: true,
			Stamp: dnscryptStamp(t, "217.12.203.133:5353", "2.dnscrypt-cert.bg.d0wn.biz", d0wnBGKey, noLogProp)},
		{Name: "dnscrypt.eu-nl", FullName: "DNSCrypt.eu Holland", Description: "Free, non-logged, uncensored. Hosted by RamNode.",
			Location: "Netherlands", URL: "https://dnscrypt.eu", DNSSEC: true, NoLogs: true,
			Stamp: dnscryptStamp(t, "176.56.237.171:443", "2.dnscrypt-cert.resolver1.dnscrypt.eu", euNLKey, dnssecProp|noLogProp)},
		{Name: "dnscrypt.eu-nl-ipv6", FullName: "DNSCrypt.eu Holland over IPv6", Description: "Free, non-logged, uncensored. Hosted by RamNode.",
			Location: "Netherlands", URL: "https://dnscrypt.eu", DNSSEC: true, NoLogs: true,
			Stamp: dnscryptStamp(t, "[2a00:d880:3:1::a6c1:2e89]:443", "2.dnscrypt-cert.resolver1.dnscrypt.eu", euNLKey, dnssecProp|noLogProp)},
		{Name: "dnscrypt.org-fr", FullName: "DNSCrypt.org France",
			Description: "DNSSEC/Namecoin/Non-logged/Uncensored - ARM server donated by Scaleway.com",
			Location:    "Paris, France", DNSSEC: true, NoLogs: true, Namecoin: true,
			Stamp: dnscryptStamp(t, "212.47.228.136:443", "2.dnscrypt-cert.fr.dnscrypt.org", orgFRKey, dnssecProp|noLogProp)},
		{Name: "quoted-names", FullName: `The "quoted" resolver`, Description: "A description\non two lines, with \"quotes\"",
			Location: "Nowhere", DNSSEC: true, NoLogs: true,
			Stamp: dnscryptStamp(t, "192.0.2.1:8443", "2.dnscrypt-cert.example.com", orgFRKey, dnssecProp|noLogProp)},
	}
	// Every row says "yes" or "no" in both columns: "not no" is "yes".
	for i := range list {
		list[i].dnssecNotNo, list[i].noLogsNotNo = list[i].DNSSEC, list[i].NoLogs
	}
	return list
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkList(t *testing.T, got, want []Resolver) {
	t.Helper()
	if len(got) != len(want) {
		names := make([]string, len(got))
		for i, r := range got {
			names[i] = r.Name
		}
		t.Fatalf("got %d resolvers %q, want %d", len(got), names, len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("resolver %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestParseCSVFixture(t *testing.T) {
	got, err := ParseCSV(bytes.NewReader(readFixture(t, "resolvers-1.9.5.csv")))
	if err != nil {
		t.Fatal(err)
	}
	checkList(t, got, fixtureWant(t))
}

// TestParseCSVReordered reads the same resolvers from a list whose columns
// are in another order, with an unknown column and without the columns
// nothing reads.
func TestParseCSVReordered(t *testing.T) {
	got, err := ParseCSV(bytes.NewReader(readFixture(t, "resolvers-reordered.csv")))
	if err != nil {
		t.Fatal(err)
	}
	checkList(t, got, fixtureWant(t))
}

func TestParseCSVLineEndings(t *testing.T) {
	lf := readFixture(t, "resolvers-1.9.5.csv")
	crlf := bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n"))
	for _, tc := range []struct {
		desc string
		data []byte
	}{
		{"CRLF", crlf},
		{"BOM and CRLF", append([]byte("\xef\xbb\xbf"), crlf...)},
		{"no final line break", bytes.TrimSuffix(lf, []byte("\n"))},
		{"BOM, CRLF, no final line break", append([]byte("\xef\xbb\xbf"), bytes.TrimSuffix(crlf, []byte("\r\n"))...)},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ParseCSV(bytes.NewReader(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			want := fixtureWant(t)
			if tc.desc != "no final line break" {
				// The line break inside the quoted description is CRLF too.
				want[len(want)-1].Description = "A description\r\non two lines, with \"quotes\""
			}
			checkList(t, got, want)
		})
	}
}

// TestParseCSVMatchesPublishedStamp checks that the 1.x list's
// dnscrypt.org-fr row describes the server published today as scaleway-fr.
func TestParseCSVMatchesPublishedStamp(t *testing.T) {
	list, err := ParseCSV(bytes.NewReader(readFixture(t, "resolvers-1.9.5.csv")))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Lookup(list, "dnscrypt.org-fr")
	if err != nil {
		t.Fatal(err)
	}
	published, err := Parse("sdns://AQcAAAAAAAAADjIxMi40Ny4yMjguMTM2IOgBuE6mBr-wusDOQ0RbsV66ZLAvo8SqMa4QY2oHkDJNHzIuZG5zY3J5cHQtY2VydC5mci5kbnNjcnlwdC5vcmc")
	if err != nil {
		t.Fatal(err)
	}
	published.Props &^= dnsstamps.ServerInformalPropertyNoFilter // the 1.x list has no no-filter column
	if !reflect.DeepEqual(res.Stamp, published) {
		t.Errorf("got %+v, want %+v", res.Stamp, published)
	}
}

func TestParseCSVRowErrors(t *testing.T) {
	const good = "192.0.2.1:443,2.dnscrypt-cert.example.com," + orgFRKey + ",\n"
	in := csvHeader +
		"ok-1,,,,,,,yes,yes,no," + good + // line 2
		"no-provider,,,,,,,yes,yes,no,192.0.2.1,," + orgFRKey + ",\n" + // line 3
		"no-key,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com,,\n" + // line 4
		"no-address,,,,,,,yes,yes,no,,2.dnscrypt-cert.example.com," + orgFRKey + ",\n" + // line 5
		"short-key,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey[:74] + ",\n" + // line 6
		"host-address,,,,,,,yes,yes,no,resolver.example.com,2.dnscrypt-cert.example.com," + orgFRKey + ",\n" + // line 7
		"long-name,,,,,,,yes,yes,no,192.0.2.1," + strings.Repeat("n", 256) + "," + orgFRKey + ",\n" + // line 8
		"truncated,,,,,,,yes\n" + // line 9: too few columns for the key
		"wide" + strings.Repeat(",", MaxColumns) + "\n" + // line 10: 51 columns
		"ok-2,,,,,,,no,no,no," + good + // line 11
		"unterminated,\"never closed,,,,,,,,," + good // line 12 to the end
	list, err := ParseCSV(strings.NewReader(in))
	if len(list) != 2 || list[0].Name != "ok-1" || list[1].Name != "ok-2" {
		t.Errorf("got %d resolvers %+v, want ok-1 and ok-2", len(list), list)
	}
	if err == nil {
		t.Fatal("got no error, want the bad rows reported")
	}
	if errors.Is(err, ErrInvalidStamp) {
		t.Errorf("got %v, which should not wrap ErrInvalidStamp", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("got %T, want an errors.Join result", err)
	}
	want := []struct {
		line int
		name string
		is   error
		msg  string
	}{
		{3, "no-provider", ErrMissingField, `line 3: resolver "no-provider": stamps: missing field: Provider name`},
		{4, "no-key", ErrMissingField, "Provider public key"},
		{5, "no-address", ErrMissingField, "Resolver address"},
		{6, "short-key", ErrInvalidProviderKey, "30 bytes, want 32"},
		{7, "host-address", ErrInvalidAddress, "not an IP address"},
		{8, "long-name", ErrInvalidProviderName, "256 bytes long, a stamp holds at most 255"},
		{9, "truncated", ErrMissingField, "Provider name"},
		{10, "wide", ErrInvalidList, "51 columns, limit 50"},
		{12, "", ErrInvalidList, "line 12: stamps: invalid resolvers list: unterminated quoted field"},
	}
	errs := joined.Unwrap()
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		var re *RowError
		if !errors.As(errs[i], &re) {
			t.Errorf("error %d: got %T %v, want a *RowError", i, errs[i], errs[i])
			continue
		}
		if re.Line != w.line || re.Name != w.name {
			t.Errorf("error %d: got line %d name %q, want line %d name %q", i, re.Line, re.Name, w.line, w.name)
		}
		if !errors.Is(re, w.is) {
			t.Errorf("error %d: got %v, want it to wrap %v", i, re, w.is)
		}
		if !strings.Contains(re.Error(), w.msg) {
			t.Errorf("error %d: got %q, want it to contain %q", i, re, w.msg)
		}
	}
}

// TestParseCSVEmptyName: with Name not first, a row can have a first
// column but no name; 1.x reports "Resolver with an empty name".
func TestParseCSVEmptyName(t *testing.T) {
	in := "Resolver address,Provider name,Provider public key,Name\n" +
		"192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + ",\n"
	list, err := ParseCSV(strings.NewReader(in))
	if len(list) != 0 {
		t.Errorf("got %+v, want no resolvers", list)
	}
	var re *RowError
	if !errors.As(err, &re) || re.Line != 2 || !errors.Is(err, ErrMissingField) {
		t.Errorf("got %v, want a RowError for line 2 wrapping ErrMissingField", err)
	}
}

func TestParseCSVListErrors(t *testing.T) {
	without := func(col string) string {
		return strings.Replace(csvHeader, col, "Something else", 1) +
			"x,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + ",\n"
	}
	for _, tc := range []struct {
		desc, in, msg string
	}{
		{"empty", "", "empty"},
		{"BOM only", "\xef\xbb\xbf", "empty"},
		{"blank first line", "\n" + csvHeader, "header has 1 columns"},
		{"three columns", "Name,Provider name,Provider public key\n", "header has 3 columns"},
		{"51 columns", "Name,Resolver address,Provider name,Provider public key" + strings.Repeat(",x", 47) + "\n", "header has 51 columns"},
		{"no Name", without("Name,Full name"), `no "Name" column`},
		{"no Resolver address", without("Resolver address"), `no "Resolver address" column`},
		{"no Provider name", without("Provider name"), `no "Provider name" column`},
		{"no Provider public key", without("Provider public key,"), `no "Provider public key" column`},
		{"unterminated quote in header", "Name,\"Resolver address,Provider name,Provider public key\n", "unterminated quoted field"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			list, err := ParseCSV(strings.NewReader(tc.in))
			if list != nil {
				t.Errorf("got %+v, want nil", list)
			}
			if !errors.Is(err, ErrInvalidList) {
				t.Fatalf("got %v, want an error wrapping ErrInvalidList", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %q, want it to contain %q", err, tc.msg)
			}
		})
	}
}

// TestParseCSVHeaderNames: header names are trimmed and matched ignoring
// ASCII case, the first of duplicate columns is used, and a non-ASCII
// letter that lowers to ASCII does not match.
func TestParseCSVHeaderNames(t *testing.T) {
	in := " NAME , resolver ADDRESS,Provider Name,provider public key,Name\n" +
		"x,192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + ",ignored\n"
	list, err := ParseCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "x" {
		t.Errorf("got %+v, want one resolver named x", list)
	}
	kelvin := "Name,Resolver address,Provider name,Provider public \u212aey\n"
	if _, err := ParseCSV(strings.NewReader(kelvin)); !errors.Is(err, ErrInvalidList) {
		t.Errorf("Kelvin sign: got %v, want an error wrapping ErrInvalidList", err)
	}
}

// TestParseCSVQuoting covers the dialect on single fields.
func TestParseCSVQuoting(t *testing.T) {
	for _, tc := range []struct{ field, want string }{
		{`plain`, `plain`},
		{`  padded  `, `padded`},
		{`"quoted, with comma"`, `quoted, with comma`},
		{`"say ""hi"""`, `say "hi"`},
		{`""""`, `"`},
		{`""`, ``},
		{`  "  quoted spaces are trimmed too, as in 1.x  "  `, `quoted spaces are trimmed too, as in 1.x`},
		{`pre"quoted"post`, `prequotedpost`},
		{"\"two\nlines\"", "two\nlines"},
		{"tab\tinside", "tab\tinside"},
		{"\t\v\f trimmed \r", "trimmed"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			in := "Name,Full name,Resolver address,Provider name,Provider public key\n" +
				"x," + tc.field + ",192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + "\n"
			list, err := ParseCSV(strings.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 {
				t.Fatalf("got %d resolvers, want 1", len(list))
			}
			if list[0].FullName != tc.want {
				t.Errorf("got %q, want %q", list[0].FullName, tc.want)
			}
		})
	}
}

// TestParseCSVSkippedRows covers the rows 1.x skips without a word.
func TestParseCSVSkippedRows(t *testing.T) {
	in := csvHeader +
		"\n" +
		"\r\n" +
		"   \n" +
		"a,b,c\n" +
		"#commented,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + ",\n" +
		"  # indented comment,,,,,,,,,,,,,\n" +
		",no name in the first column,,,,,,,,,,,,\n" +
		"\"\",empty quoted first column,,,,,,,,,,,,\n" +
		"ok,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + ",\n"
	list, err := ParseCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "ok" {
		t.Errorf("got %+v, want only ok", list)
	}
}

func TestParseCSVLineNumbers(t *testing.T) {
	in := csvHeader +
		"multi,\"three\nline\nname\",,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + ",\n" + // lines 2-4
		"\n" + // line 5
		"bad,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com,00,\n" // line 6
	_, err := ParseCSV(strings.NewReader(in))
	var re *RowError
	if !errors.As(err, &re) || re.Line != 6 || re.Name != "bad" {
		t.Errorf("got %v, want a RowError for line 6, resolver bad", err)
	}
}

func TestParseCSVTooManyBadRows(t *testing.T) {
	var b strings.Builder
	b.WriteString(csvHeader)
	for i := range 250 {
		fmt.Fprintf(&b, "bad-%d,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com,,\n", i)
	}
	b.WriteString("ok,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + ",\n")
	list, err := ParseCSV(strings.NewReader(b.String()))
	if len(list) != 1 {
		t.Errorf("got %d resolvers, want 1", len(list))
	}
	errs := err.(interface{ Unwrap() []error }).Unwrap()
	if len(errs) != maxRowErrors+1 {
		t.Fatalf("got %d errors, want %d", len(errs), maxRowErrors+1)
	}
	if last := errs[len(errs)-1].Error(); !strings.Contains(last, "150 more bad rows") {
		t.Errorf("last error: got %q, want it to mention 150 more bad rows", last)
	}
}

// endless yields an unbounded stream of valid-looking rows.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	const row = "r,,,,,,,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com," + orgFRKey + ",\n"
	for i := range p {
		p[i] = row[e.n%int64(len(row))]
		e.n++
	}
	return len(p), nil
}

func TestParseCSVTooLarge(t *testing.T) {
	e := &endless{}
	list, err := ParseCSV(io.MultiReader(strings.NewReader(csvHeader), e))
	if list != nil || !errors.Is(err, ErrInvalidList) {
		t.Errorf("got %d resolvers, %v; want nil and an error wrapping ErrInvalidList", len(list), err)
	}
	if e.n > MaxListSize+1 {
		t.Errorf("read %d bytes, want at most %d", e.n, MaxListSize+1)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestParseCSVReadError(t *testing.T) {
	list, err := ParseCSV(failingReader{})
	if list != nil || err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("got %v, %v; want nil and the read error", list, err)
	}
}

func TestLookup(t *testing.T) {
	list, err := ParseCSV(bytes.NewReader(readFixture(t, "resolvers-1.9.5.csv")))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cisco-ipv6", "CISCO-IPV6", "Cisco-IPv6"} {
		res, err := Lookup(list, name)
		if err != nil || res.Name != "cisco-ipv6" {
			t.Errorf("Lookup(%q): got %q, %v; want cisco-ipv6", name, res.Name, err)
		}
	}
	for _, name := range []string{"", "cisco ", "cisco-ipv", "random", "ciſco"} {
		if res, err := Lookup(list, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%q): got %q, %v; want an error wrapping ErrNotFound", name, res.Name, err)
		}
	}
	dup := []Resolver{{Name: "x", FullName: "first"}, {Name: "X", FullName: "second"}}
	if res, _ := Lookup(dup, "x"); res.FullName != "first" {
		t.Errorf("duplicates: got %q, want first", res.FullName)
	}
	if _, err := Lookup(nil, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("nil list: got %v, want ErrNotFound", err)
	}
}

// pickCounts calls Random n times and counts the names it picks; a name
// outside candidates is an error.
func pickCounts(t *testing.T, list []Resolver, r *rand.Rand, n int, candidates map[string]bool) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		res, err := Random(list, r)
		if err != nil {
			t.Fatal(err)
		}
		counts[res.Name]++
	}
	for name, c := range counts {
		if !candidates[name] {
			t.Errorf("picked %s %d times, want never", name, c)
		}
	}
	return counts
}

func TestRandom(t *testing.T) {
	list, err := ParseCSV(bytes.NewReader(readFixture(t, "resolvers-1.9.5.csv")))
	if err != nil {
		t.Fatal(err)
	}
	// DNSSEC, no logs and IPv4: dnscrypt.eu-nl-ipv6 is IPv6, cs-uswest
	// and d0wn-bg-ns1 do not validate DNSSEC, cisco logs.
	candidates := map[string]bool{"dnscrypt.eu-nl": true, "dnscrypt.org-fr": true, "quoted-names": true}
	const n = 30000
	counts := pickCounts(t, list, rand.New(rand.NewPCG(1, 2)), n, candidates)
	for name := range candidates {
		// Expect n/3 = 10000; 5 standard deviations is about 410.
		if c := counts[name]; c < 9500 || c > 10500 {
			t.Errorf("picked %s %d times in %d, want about %d", name, c, n, n/3)
		}
	}
	if res, err := Random(list, nil); err != nil || !candidates[res.Name] {
		t.Errorf("nil source: got %q, %v; want a candidate", res.Name, err)
	}
	// The same seed gives the same choice.
	a, _ := Random(list, rand.New(rand.NewPCG(7, 7)))
	b, _ := Random(list, rand.New(rand.NewPCG(7, 7)))
	if a.Name != b.Name {
		t.Errorf("same seed: got %s and %s", a.Name, b.Name)
	}
}

// TestRandomNotNo checks 1.x's rule: a row is a candidate unless its
// "DNSSEC validation" or "No logs" column says "no" or is missing.
func TestRandomNotNo(t *testing.T) {
	row := func(name, dnssec, noLogs, addr string) string {
		return name + ",,,,,,," + dnssec + "," + noLogs + ",no," + addr + ",2.dnscrypt-cert.example.com," + orgFRKey + ",\n"
	}
	list, err := ParseCSV(strings.NewReader(csvHeader +
		row("yes-yes", "yes", "yes", "192.0.2.1") +
		row("empty-dnssec", "", "yes", "192.0.2.2") +
		row("unknown-logs", "yes", "unknown", "192.0.2.3") +
		row("empty-both", "", "", "192.0.2.4") +
		row("other-words", "maybe", "1", "192.0.2.5") +
		row("dnssec-NO", "NO", "yes", "192.0.2.6") +
		row("logs-No", "yes", "No", "192.0.2.7") +
		row("ipv6", "", "", "[2001:db8::1]")))
	if err != nil || len(list) != 8 {
		t.Fatalf("got %d resolvers, %v", len(list), err)
	}
	candidates := map[string]bool{"yes-yes": true, "empty-dnssec": true, "unknown-logs": true, "empty-both": true, "other-words": true}
	counts := pickCounts(t, list, rand.New(rand.NewPCG(3, 4)), 2000, candidates)
	for name := range candidates {
		if counts[name] < 300 { // expect 400
			t.Errorf("picked %s %d times in 2000, want about 400", name, counts[name])
		}
	}
	// The exported fields still say "yes" only.
	if res, _ := Lookup(list, "empty-both"); res.DNSSEC || res.NoLogs || res.Stamp.Props != 0 {
		t.Errorf("empty-both: got DNSSEC %v, NoLogs %v, props %x; want false, false, 0", res.DNSSEC, res.NoLogs, res.Stamp.Props)
	}

	// A row without one of the columns is never a candidate.
	for _, in := range []string{
		"Name,Resolver address,Provider name,Provider public key,DNSSEC validation\nx,192.0.2.1,2.p," + orgFRKey + ",yes\n",
		"Name,Resolver address,Provider name,Provider public key,No logs\nx,192.0.2.1,2.p," + orgFRKey + ",yes\n",
		"Name,Resolver address,Provider name,Provider public key,DNSSEC validation,No logs\nx,192.0.2.1,2.p," + orgFRKey + ",yes\n",
	} {
		list, err := ParseCSV(strings.NewReader(in))
		if err != nil || len(list) != 1 {
			t.Fatalf("%q: got %d resolvers, %v", in, len(list), err)
		}
		if res, err := Random(list, nil); !errors.Is(err, ErrNoCandidate) {
			t.Errorf("%q: got %q, %v; want ErrNoCandidate", in, res.Name, err)
		}
	}
}

func TestRandomNoCandidate(t *testing.T) {
	for _, list := range [][]Resolver{
		nil,
		{{Name: "logs", DNSSEC: true, Stamp: dnsstamps.ServerStamp{ServerAddrStr: "192.0.2.1:443"}}},
		{{Name: "no-dnssec", NoLogs: true, Stamp: dnsstamps.ServerStamp{ServerAddrStr: "192.0.2.1:443"}}},
		{{Name: "ipv6", DNSSEC: true, NoLogs: true, Stamp: dnsstamps.ServerStamp{ServerAddrStr: "[2001:db8::1]:443"}}},
		{{Name: "mapped", DNSSEC: true, NoLogs: true, Stamp: dnsstamps.ServerStamp{ServerAddrStr: "[::ffff:192.0.2.1]:443"}}},
	} {
		if res, err := Random(list, rand.New(rand.NewPCG(1, 1))); !errors.Is(err, ErrNoCandidate) {
			t.Errorf("%+v: got %q, %v; want ErrNoCandidate", list, res.Name, err)
		}
	}
}

// TestRandomN: n distinct candidates, each set of two of the three
// candidates about as likely as the others, in both orders; fewer
// candidates than wanted is ErrNoCandidate.
func TestRandomN(t *testing.T) {
	list, err := ParseCSV(bytes.NewReader(readFixture(t, "resolvers-1.9.5.csv")))
	if err != nil {
		t.Fatal(err)
	}
	candidates := map[string]bool{"dnscrypt.eu-nl": true, "dnscrypt.org-fr": true, "quoted-names": true}
	var names []string
	for _, res := range Candidates(list) {
		names = append(names, res.Name)
	}
	if want := []string{"dnscrypt.eu-nl", "dnscrypt.org-fr", "quoted-names"}; !slices.Equal(names, want) {
		t.Errorf("Candidates: got %q, want %q", names, want)
	}
	r := rand.New(rand.NewPCG(5, 6))
	const n = 6000
	pairs := map[string]int{}
	for range n {
		got, err := RandomN(list, 2, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Name == got[1].Name || !candidates[got[0].Name] || !candidates[got[1].Name] {
			t.Fatalf("RandomN(2): got %q and %q", got[0].Name, got[1].Name)
		}
		pairs[got[0].Name+" "+got[1].Name]++
	}
	// Six ordered pairs, n/6 = 1000 each; 5 standard deviations is about 150.
	if len(pairs) != 6 {
		t.Errorf("ordered pairs: got %v, want all 6", pairs)
	}
	for p, c := range pairs {
		if c < 850 || c > 1150 {
			t.Errorf("pair %s picked %d times in %d, want about %d", p, c, n, n/6)
		}
	}
	all, err := RandomN(list, 3, nil)
	if err != nil || len(all) != 3 {
		t.Fatalf("RandomN(3): got %d, %v", len(all), err)
	}
	if _, err := RandomN(list, 4, nil); !errors.Is(err, ErrNoCandidate) || !strings.Contains(err.Error(), "4 wanted, 3 candidates") {
		t.Errorf("RandomN(4): got %v, want ErrNoCandidate with the counts", err)
	}
	if got, err := RandomN(list, 0, nil); got != nil || err != nil {
		t.Errorf("RandomN(0): got %v, %v; want none", got, err)
	}
	// Random draws as RandomN(1) does: the same seed, the same pick.
	a, _ := Random(list, rand.New(rand.NewPCG(9, 9)))
	b, _ := RandomN(list, 1, rand.New(rand.NewPCG(9, 9)))
	if a.Name != b[0].Name {
		t.Errorf("Random %s, RandomN(1) %s with the same seed", a.Name, b[0].Name)
	}
	// The list is left as it was.
	if again := Candidates(list); again[0].Name != "dnscrypt.eu-nl" {
		t.Errorf("list reordered: %s first", again[0].Name)
	}
}

func BenchmarkParseCSV(b *testing.B) {
	data := readFixture(b, "resolvers-1.9.5.csv")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseCSV(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseCSVWorstCase parses a list of MaxListSize bytes of bad
// rows, the most work hostile input can ask for.
func BenchmarkParseCSVWorstCase(b *testing.B) {
	row := "x,,,,,,,,,,1,2.a,0,\n"
	data := []byte(csvHeader + strings.Repeat(row, (MaxListSize-len(csvHeader))/len(row)))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseCSV(bytes.NewReader(data)); err == nil {
			b.Fatal("no error")
		}
	}
}
