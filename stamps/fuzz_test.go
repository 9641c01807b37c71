package stamps

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/jedisct1/go-dnsstamps"
	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
)

// FuzzParse feeds each input to Parse twice: as a stamp string, and as the
// binary payload of one. A stamp that parses must survive Format and Parse
// unchanged and meet Parse's documented checks.
func FuzzParse(f *testing.F) {
	pk := seqKey()
	hash := bytes.Repeat([]byte{0xaa}, 32)
	for _, s := range []string{
		goDNSStampsExample,
		labStamp,
		"sdns://AQcAAAAAAAAAEzE4NS4xMTEuMTg4LjQ2Ojg0NDMgC-tbTwd-08e_JtBJmgsvjAG9i10itE-LBNCwjTflezQiMi5kbnNjcnlwdC1jZXJ0LmRuc2NyeXB0LmNhLTEtaXB2NA",
		"sdns://AQcAAAAAAAAAJlsyMDAxOmJjODoxNjQwOjFjZTI6ZGMwMDpmZjpmZTI4OjViMTddIOkN2X2qXGx4Ihyixe0BaJYtE8tVbM90V7NUVG8VK8GQHDIuZG5zY3J5cHQtY2VydC5zY2FsZXdheS1hbXM",
		"sdns://AgcAAAAAAAAABzEuMC4wLjEAEmRucy5jbG91ZGZsYXJlLmNvbQovZG5zLXF1ZXJ5",
		"sdns://AgcAAAAAAAAAAAAVZG9oLmNsZWFuYnJvd3Npbmcub3JnEi9kb2gvYWR1bHQtZmlsdGVyLw",
		"sdns://gRE5NS4xNTQuMTA2LjQ2Ojg0NDM",
		"sdns://",
		"sdns:",
		"",
		rawDNSCrypt(7, "192.0.2.1", pk, "2.dnscrypt-cert.example.com"),
		rawDNSCrypt(7, "[2001:db8::1]:8443", pk, "2.dnscrypt-cert.example.com"),
		rawDNSCrypt(7, "2001:db8::1:443", pk, "2.dnscrypt-cert.example.com"),
		rawDNSCrypt(7, "[192.0.2.1]:443", pk, "2.dnscrypt-cert.example.com"),
		rawDNSCrypt(0, "192.0.2.1", pk[:31], "2.dnscrypt-cert.example.com"),
		rawStamp([]byte{0x00}, props(1), lp("192.0.2.53")),
		rawStamp([]byte{0x02}, props(7), lp("192.0.2.1"), []byte{0x80 | 32}, hash, []byte{32}, hash, lp("doh.example.com"), lp("/dns-query"), []byte{0x80 | 9}, []byte("192.0.2.2"), lp("192.0.2.3")),
		rawStamp([]byte{0x03}, props(0), lp("[2001:db8::1]"), []byte{0}, lp("dot.example.com"), lp("192.0.2.4")),
		rawStamp([]byte{0x04}, props(0), lp("192.0.2.1:784"), []byte{0}, lp("doq.example.com")),
		rawStamp([]byte{0x05}, props(0), lp("odoh.example.com"), lp("/dns-query")),
		rawStamp([]byte{0x85}, props(0), lp("192.0.2.1"), []byte{0}, lp("relay.example.com"), lp("/proxy")),
	} {
		f.Add([]byte(s))
		if payload, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, "sdns://")); err == nil {
			f.Add(payload)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkStampRoundTrip(t, string(data))
		checkStampRoundTrip(t, "sdns://"+base64.RawURLEncoding.EncodeToString(data))
	})
}

func checkStampRoundTrip(t *testing.T, s string) {
	st, err := Parse(s)
	if err != nil {
		if !errors.Is(err, ErrInvalidStamp) {
			t.Fatalf("Parse(%q): error %v does not wrap ErrInvalidStamp", s, err)
		}
		if !reflect.DeepEqual(st, dnsstamps.ServerStamp{}) {
			t.Fatalf("Parse(%q): non-zero stamp %+v with error", s, st)
		}
		return
	}
	switch st.Proto {
	case dnsstamps.StampProtoTypeDNSCrypt:
		if len(st.ServerPk) != ed25519.PublicKeySize || st.ProviderName == "" {
			t.Fatalf("Parse(%q): accepted %+v", s, st)
		}
		fallthrough
	case dnsstamps.StampProtoTypePlain:
		if ap, err := netip.ParseAddrPort(st.ServerAddrStr); err != nil || ap.String() != st.ServerAddrStr {
			t.Fatalf("Parse(%q): address %q is not canonical ip:port", s, st.ServerAddrStr)
		}
	}
	s2 := Format(st)
	if s2 == "" {
		t.Fatalf("Format(Parse(%q)) = \"\" for %+v", s, st)
	}
	st2, err := Parse(s2)
	if err != nil {
		t.Fatalf("Parse(Format(Parse(%q))) = Parse(%q): %v", s, s2, err)
	}
	if !reflect.DeepEqual(st, st2) {
		t.Fatalf("round trip of %q through %q:\n got %+v\nwant %+v", s, s2, st2, st)
	}
	if s3 := Format(st2); s3 != s2 {
		t.Fatalf("Format not stable: %q then %q", s2, s3)
	}
}

// FuzzParseCSV checks that ParseCSV never fails badly, that every resolver
// it returns is usable, and that writing the resolvers back as CSV and
// parsing that gives the same list.
func FuzzParseCSV(f *testing.F) {
	for _, name := range []string{"resolvers-1.9.5.csv", "resolvers-reordered.csv"} {
		f.Add(readFixture(f, name))
	}
	f.Add(defaultList)
	f.Add([]byte(""))
	f.Add([]byte("\xef\xbb\xbf"))
	f.Add([]byte("Name,Resolver address,Provider name,Provider public key\r\nx,192.0.2.1,2.p," + orgFRKey + "\r\n"))
	f.Add([]byte("Name,Resolver address,Provider name,Provider public key\nx,\"192.0.2.1\",\"2.p\"\"q\",\"" + labKeyHex + "\"\n#c,,,\n,,,\n\"unterminated"))
	f.Add([]byte("Provider public key,Name,Resolver address,Provider name\n" + labKeyHex + ",a,[2001:db8::1],2.p\n" + labKeyHex + ",b,2001:db8::1,2.p\n"))
	f.Add([]byte(csvHeader + "x,,,,,,,yes,yes,no,192.0.2.1,2.p,00,\n" + strings.Repeat(",", 60) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseCSV(bytes.NewReader(data))
		if list == nil && err != nil && !errors.Is(err, ErrInvalidList) {
			var re *RowError
			if !errors.As(err, &re) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		for _, res := range list {
			checkResolver(t, res)
		}
		if len(list) == 0 {
			return
		}
		again, err := ParseCSV(strings.NewReader(writeCSV(list)))
		if err != nil {
			t.Fatalf("re-parse of written list: %v\n%s", err, writeCSV(list))
		}
		if !reflect.DeepEqual(again, list) {
			t.Fatalf("CSV round trip:\n got %+v\nwant %+v", again, list)
		}
	})
}

func checkResolver(t *testing.T, res Resolver) {
	t.Helper()
	if res.Name == "" {
		t.Fatalf("resolver without a name: %+v", res)
	}
	st := res.Stamp
	switch st.Proto {
	case dnsstamps.StampProtoTypeDNSCrypt:
		if len(st.ServerPk) != ed25519.PublicKeySize || res.Address != "" {
			t.Fatalf("%q: unusable stamp %+v", res.Name, st)
		}
	default:
		if res.Address != "" && !validHostPort(res.Address) {
			t.Fatalf("%q: address %q is not host:port", res.Name, res.Address)
		}
	}
	back, err := Parse(Format(st))
	if err != nil || !reflect.DeepEqual(back, st) {
		t.Fatalf("%q: stamp %+v does not round-trip: %+v, %v", res.Name, st, back, err)
	}
}

// writeCSV writes a list in the 1.x format, every field quoted, with the
// address first so that no row is taken for a comment.
func writeCSV(list []Resolver) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	// A column that is neither "yes" nor "no" is "unknown"; one that is
	// missing is "no", which Random reads the same.
	ynu := func(yes, notNo bool) string {
		if !yes && notNo {
			return "unknown"
		}
		return yn(yes)
	}
	var b strings.Builder
	b.WriteString("Resolver address,Name,Provider name,Provider public key,DNSSEC validation,No logs,Namecoin,Full name,Description,Location,URL,DNS stamp\n")
	for _, r := range list {
		addr, provider, key, stamp := q(r.Stamp.ServerAddrStr), q(r.Stamp.ProviderName), certs.Fingerprint(r.Stamp.ServerPk), ""
		if r.Stamp.Proto != dnsstamps.StampProtoTypeDNSCrypt {
			addr, provider, key, stamp = q(r.Address), "", "", q(Format(r.Stamp))
		}
		b.WriteString(strings.Join([]string{
			addr, q(r.Name), provider, key,
			ynu(r.DNSSEC, r.dnssecNotNo), ynu(r.NoLogs, r.noLogsNotNo), yn(r.Namecoin), q(r.FullName), q(r.Description), q(r.Location), q(r.URL),
			stamp,
		}, ","))
		b.WriteString("\n")
	}
	return b.String()
}

// FuzzParseProviderKey compares ParseProviderKey with a plain statement of
// its rule: split on separators, every piece an even number of hex digits,
// 64 digits in all.
func FuzzParseProviderKey(f *testing.F) {
	for _, s := range []string{
		labKeyColon, labKeyHex, strings.ToLower(labKeyColon), " " + labKeyHex + "\n",
		strings.ReplaceAll(labKeyColon, ":", " "), labKeyHex[:63], labKeyHex + "00",
		"E3C:2F35A" + labKeyHex[8:], strings.ReplaceAll(labKeyColon, ":", "-"), "", ":::",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pk, err := ParseProviderKey(s)
		want, ok := referenceKey(s)
		if ok != (err == nil) {
			t.Fatalf("ParseProviderKey(%q) = %x, %v; reference ok=%v", s, pk, err, ok)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidProviderKey) || pk != nil {
				t.Fatalf("ParseProviderKey(%q) = %x, %v", s, pk, err)
			}
			return
		}
		if !bytes.Equal(pk, want) {
			t.Fatalf("ParseProviderKey(%q) = %x, want %x", s, pk, want)
		}
		back, err := ParseProviderKey(certs.Fingerprint(pk))
		if err != nil || !bytes.Equal(back, pk) {
			t.Fatalf("round trip of %x through %q: %x, %v", pk, certs.Fingerprint(pk), back, err)
		}
	})
}

func referenceKey(s string) ([]byte, bool) {
	// The separators 1.x ignores in provider keys (dnscrypt_fingerprint_to_key).
	pieces := strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(": \t\r\n\v\f", r) })
	var digits strings.Builder
	for _, p := range pieces {
		if len(p)%2 != 0 {
			return nil, false
		}
		digits.WriteString(p)
	}
	if digits.Len() != 64 {
		return nil, false
	}
	b, err := hex.DecodeString(digits.String())
	return b, err == nil
}

// FuzzNormalizeAddr checks NormalizeAddr's result and compares it with
// net/netip on the inputs netip understands.
func FuzzNormalizeAddr(f *testing.F) {
	for _, s := range []string{
		"192.0.2.1", "192.0.2.1:53", "::1", "[::1]", "[::1]:53", "2001:db8::1:443",
		"[::ffff:192.0.2.1]:443", "[192.0.2.1]:443", "fe80::1%eth0", "localhost:53",
		"192.0.2.1:", "192.0.2.1:0", ":53", "[", "]", "[]", "",
	} {
		f.Add(s, uint16(443))
	}
	f.Add("192.0.2.1", uint16(0))
	f.Fuzz(func(t *testing.T, s string, port uint16) {
		got, err := NormalizeAddr(s, int(port))
		if err != nil {
			if !errors.Is(err, ErrInvalidAddress) || got != "" {
				t.Fatalf("NormalizeAddr(%q, %d) = %q, %v", s, port, got, err)
			}
		} else {
			ap, perr := netip.ParseAddrPort(got)
			if perr != nil || ap.String() != got || ap.Port() == 0 || ap.Addr().Zone() != "" {
				t.Fatalf("NormalizeAddr(%q, %d) = %q, not canonical ip:port", s, port, got)
			}
			for _, p := range []int{1, 53, 443, 65535} {
				if again, err := NormalizeAddr(got, p); err != nil || again != got {
					t.Fatalf("NormalizeAddr(%q, %d) = %q, %v; want %q", got, p, again, err, got)
				}
			}
		}
		if port == 0 {
			return
		}
		// Where netip reads the input the same way, the answers agree.
		if ip, perr := netip.ParseAddr(s); perr == nil && ip.Zone() == "" {
			if want := netip.AddrPortFrom(ip, port).String(); err != nil || got != want {
				t.Fatalf("NormalizeAddr(%q, %d) = %q, %v; want %q", s, port, got, err, want)
			}
		}
		if ap, perr := netip.ParseAddrPort(s); perr == nil && ap.Addr().Zone() == "" && ap.Port() != 0 && isDecimalPort(s) {
			if err != nil || got != ap.String() {
				t.Fatalf("NormalizeAddr(%q, %d) = %q, %v; want %q", s, port, got, err, ap.String())
			}
		}
	})
}

// isDecimalPort reports whether the text after the last colon is digits
// only; netip also accepts what strconv.ParseUint does.
func isDecimalPort(s string) bool {
	p := s[strings.LastIndexByte(s, ':')+1:]
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}
