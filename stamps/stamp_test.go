package stamps

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jedisct1/go-dnsstamps"
)

// rawDNSCrypt encodes a DNSCrypt stamp byte by byte, independently of
// go-dnsstamps, as the shared lab's make_stamp does (start.sh).
func rawDNSCrypt(props uint64, addr string, pk []byte, name string) string {
	b := []byte{0x01}
	b = binary.LittleEndian.AppendUint64(b, props)
	b = append(b, byte(len(addr)))
	b = append(b, addr...)
	b = append(b, byte(len(pk)))
	b = append(b, pk...)
	b = append(b, byte(len(name)))
	b = append(b, name...)
	return "sdns://" + base64.RawURLEncoding.EncodeToString(b)
}

// rawStamp encodes an arbitrary payload.
func rawStamp(payload ...[]byte) string {
	return "sdns://" + base64.RawURLEncoding.EncodeToString(bytes.Join(payload, nil))
}

func lp(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func props(p uint64) []byte { return binary.LittleEndian.AppendUint64(nil, p) }

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seqKey is 00 01 02 ... 1f.
func seqKey() ed25519.PublicKey {
	pk := make(ed25519.PublicKey, 32)
	for i := range pk {
		pk[i] = byte(i)
	}
	return pk
}

const (
	// goDNSStampsExample is go-dnsstamps' TestDnscryptStamp vector
	// (dnsstamps_test.go, "same as exampleStamp in dnscrypt-stamper").
	goDNSStampsExample = "sdns://AQcAAAAAAAAACTEyNy4wLjAuMSDDhGvyS56TymQnTA7GfB7MXgJP_KzS10AZNQ6B_lRq5BkyLmRuc2NyeXB0LWNlcnQubG9jYWxob3N0"
	goDNSStampsKey     = "C3846BF24B9E93CA64274C0EC67C1ECC5E024FFCACD2D74019350E81FE546AE4"

	// labStamp was written by /work/shared/lab/start.sh (make_stamp) for
	// a throwaway provider key; labKeyColon and labKeyHex are the same key
	// as the lab prints it (provider-key.colon, provider-key.hex).
	labStamp    = "sdns://AQcAAAAAAAAADzEyNy4wLjAuMToxODQ0MyDjwvNaMcG2_xeTOWhVdQYLfNZ4YQsovwUY1bPWtqzSfxgyLmRuc2NyeXB0LWNlcnQubGFiLnRlc3Q"
	labKeyColon = "E3C2:F35A:31C1:B6FF:1793:3968:5575:060B:7CD6:7861:0B28:BF05:18D5:B3D6:B6AC:D27F"
	labKeyHex   = "e3c2f35a31c1b6ff179339685575060b7cd678610b28bf0518d5b3d6b6acd27f"
)

const allProps = dnsstamps.ServerInformalPropertyDNSSEC | dnsstamps.ServerInformalPropertyNoLog | dnsstamps.ServerInformalPropertyNoFilter

func TestDNSCryptKnownAnswer(t *testing.T) {
	pk := mustHex(t, strings.ToLower(goDNSStampsKey))
	st, err := NewDNSCrypt("127.0.0.1", "2.dnscrypt-cert.localhost", pk, allProps)
	if err != nil {
		t.Fatal(err)
	}
	if got := Format(st); got != goDNSStampsExample {
		t.Errorf("Format: got %s, want %s", got, goDNSStampsExample)
	}
	want := dnsstamps.ServerStamp{
		Proto:         dnsstamps.StampProtoTypeDNSCrypt,
		Props:         allProps,
		ServerAddrStr: "127.0.0.1:443",
		ServerPk:      pk,
		ProviderName:  "2.dnscrypt-cert.localhost",
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("NewDNSCrypt: got %+v, want %+v", st, want)
	}
	got, err := Parse(goDNSStampsExample)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse: got %+v, want %+v", got, want)
	}
}

func TestLabStamp(t *testing.T) {
	st, err := Parse(labStamp)
	if err != nil {
		t.Fatal(err)
	}
	if st.Proto != dnsstamps.StampProtoTypeDNSCrypt {
		t.Errorf("Proto: got %v, want DNSCrypt", st.Proto)
	}
	if st.Props != allProps {
		t.Errorf("Props: got %x, want %x", st.Props, allProps)
	}
	if st.ServerAddrStr != "127.0.0.1:18443" {
		t.Errorf("address: got %s, want 127.0.0.1:18443", st.ServerAddrStr)
	}
	if st.ProviderName != "2.dnscrypt-cert.lab.test" {
		t.Errorf("provider name: got %s, want 2.dnscrypt-cert.lab.test", st.ProviderName)
	}
	if want := mustHex(t, labKeyHex); !bytes.Equal(st.ServerPk, want) {
		t.Errorf("key: got %x, want %x", st.ServerPk, want)
	}
	// The 1.x values the lab prints give the same stamp, byte for byte.
	pk, err := ParseProviderKey(labKeyColon)
	if err != nil {
		t.Fatal(err)
	}
	built, err := NewDNSCrypt("127.0.0.1:18443", "2.dnscrypt-cert.lab.test", pk, allProps)
	if err != nil {
		t.Fatal(err)
	}
	if got := Format(built); got != labStamp {
		t.Errorf("Format(NewDNSCrypt(lab values)): got %s, want %s", got, labStamp)
	}
}

// TestFormatMatchesRawEncoding checks Format against the independent
// encoder for addresses with and without the default port.
func TestFormatMatchesRawEncoding(t *testing.T) {
	pk := seqKey()
	for _, tc := range []struct {
		addr    string // given to NewDNSCrypt
		encoded string // address as it must appear in the stamp
		parsed  string // address after Parse
	}{
		{"192.0.2.1", "192.0.2.1", "192.0.2.1:443"},
		{"192.0.2.1:443", "192.0.2.1", "192.0.2.1:443"},
		{"192.0.2.1:5353", "192.0.2.1:5353", "192.0.2.1:5353"},
		{"2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:443"},
		{"[2001:DB8::1]:8443", "[2001:db8::1]:8443", "[2001:db8::1]:8443"},
		{"[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]:443"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			st, err := NewDNSCrypt(tc.addr, "2.dnscrypt-cert.example.com", pk, dnsstamps.ServerInformalPropertyNoLog)
			if err != nil {
				t.Fatal(err)
			}
			want := rawDNSCrypt(2, tc.encoded, pk, "2.dnscrypt-cert.example.com")
			got := Format(st)
			if got != want {
				t.Errorf("got %s, want %s", got, want)
			}
			back, err := Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if back.ServerAddrStr != tc.parsed {
				t.Errorf("address: got %s, want %s", back.ServerAddrStr, tc.parsed)
			}
			if !reflect.DeepEqual(back, st) {
				t.Errorf("round trip: got %+v, want %+v", back, st)
			}
		})
	}
}

func TestParseOtherProtocols(t *testing.T) {
	hash := bytes.Repeat([]byte{0xaa}, 32)
	for _, tc := range []struct {
		name  string
		stamp string
		want  dnsstamps.ServerStamp
	}{
		{
			name:  "plain default port",
			stamp: rawStamp([]byte{0x00}, props(1), lp("192.0.2.53")),
			want:  dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypePlain, Props: 1, ServerAddrStr: "192.0.2.53:53"},
		},
		{
			name:  "plain IPv6 with port",
			stamp: rawStamp([]byte{0x00}, props(0), lp("[2001:db8::53]:5353")),
			want:  dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypePlain, ServerAddrStr: "[2001:db8::53]:5353"},
		},
		{
			name:  "DoH with address",
			stamp: rawStamp([]byte{0x02}, props(7), lp("192.0.2.1"), []byte{32}, hash, lp("doh.example.com"), lp("/dns-query")),
			want: dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDoH, Props: 7, ServerAddrStr: "192.0.2.1:443",
				Hashes: [][]byte{hash}, ProviderName: "doh.example.com", Path: "/dns-query"},
		},
		{
			name:  "DoH without address or hash",
			stamp: rawStamp([]byte{0x02}, props(0), lp(""), []byte{0}, lp("doh.example.com"), lp("/dns-query")),
			want:  dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDoH, ProviderName: "doh.example.com", Path: "/dns-query"},
		},
		{
			name:  "DoT default port",
			stamp: rawStamp([]byte{0x03}, props(0), lp("192.0.2.1"), []byte{0}, lp("dot.example.com")),
			want:  dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeTLS, ServerAddrStr: "192.0.2.1:853", ProviderName: "dot.example.com"},
		},
		{
			name:  "DNSCrypt relay",
			stamp: rawStamp([]byte{0x81}, lp("192.0.2.9")),
			want:  dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCryptRelay, ServerAddrStr: "192.0.2.9:443"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.stamp)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			again, err := Parse(Format(got))
			if err != nil {
				t.Fatalf("re-parse of %s: %v", Format(got), err)
			}
			if !reflect.DeepEqual(again, got) {
				t.Errorf("round trip: got %+v, want %+v", again, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	pk := seqKey()
	const name = "2.dnscrypt-cert.example.com"
	for _, tc := range []struct {
		desc  string
		stamp string
		also  error // a second sentinel the error must wrap, if any
	}{
		{"empty", "", nil},
		{"no scheme", strings.TrimPrefix(rawDNSCrypt(7, "192.0.2.1", pk, name), "sdns://"), nil},
		{"other scheme", "https://example.com/", nil},
		{"padding", rawDNSCrypt(7, "192.0.2.1", pk, name) + "=", nil},
		{"standard base64 alphabet", "sdns://AQcAAAAAAAAACTEyNy4wLjAuMSDDhGvyS56TymQnTA7GfB7MXgJP/KzS10AZNQ6B/lRq5BkyLmRuc2NyeXB0LWNlcnQubG9jYWxob3N0", nil},
		{"scheme only", "sdns://", nil},
		{"unknown protocol", rawStamp([]byte{0x42}, props(0), lp("192.0.2.1")), nil},
		{"truncated DNSCrypt", rawDNSCrypt(7, "192.0.2.1", pk, name)[:40], nil},
		{"garbage after DNSCrypt", rawStamp([]byte{0x01}, props(7), lp("192.0.2.1"), []byte{32}, pk, lp(name), []byte{0}), nil},
		{"31-byte key", rawDNSCrypt(7, "192.0.2.1", pk[:31], name), ErrInvalidProviderKey},
		{"33-byte key", rawDNSCrypt(7, "192.0.2.1", append(bytes.Clone(pk), 0), name), ErrInvalidProviderKey},
		{"empty provider name", rawDNSCrypt(7, "[2001:db8:1234:5678:9abc:def0:1234:5678]:8443", pk, ""), ErrInvalidProviderName},
		{"host name address", rawDNSCrypt(7, "resolver.example.com:443", pk, name), nil},
		{"unbracketed IPv6", rawDNSCrypt(7, "2001:db8::1:443", pk, name), ErrInvalidAddress},
		{"bracketed IPv4", rawDNSCrypt(7, "[192.0.2.1]:443", pk, name), ErrInvalidAddress},
		{"port 0", rawDNSCrypt(7, "192.0.2.1:0", pk, name), nil},
		{"port 65536", rawDNSCrypt(7, "192.0.2.1:65536", pk, name), nil},
		{"empty port", rawDNSCrypt(7, "192.0.2.1:", pk, name), nil},
		{"empty address", rawDNSCrypt(7, "", pk, name), nil},
		{"zone", rawDNSCrypt(7, "[fe80::1%eth0]:443", pk, name), nil},
		{"plain host name", rawStamp([]byte{0x00}, props(0), lp("dns.example.com")), nil},
		{"DoH empty host", rawStamp([]byte{0x02}, props(0), lp("192.0.2.1"), []byte{0}, lp(""), lp("/dns-query")), nil},
		{"DoH bracketed IPv4", rawStamp([]byte{0x02}, props(0), lp("[192.0.2.1]"), []byte{0}, lp("doh.example.com"), lp("/")), ErrInvalidAddress},
		{"DoH 31-byte hash", rawStamp([]byte{0x02}, props(0), lp(""), []byte{31}, bytes.Repeat([]byte{1}, 31), lp("doh.example.com"), lp("/")), nil},
		{"DoT empty host", rawStamp([]byte{0x03}, props(0), lp("192.0.2.1"), []byte{0}, lp("")), nil},
		{"relay+server pair", "sdns://gRE5NS4xNTQuMTA2LjQ2Ojg0NDM/" + strings.TrimPrefix(goDNSStampsExample, "sdns://"), nil},
		{"too long", "sdns://" + strings.Repeat("A", MaxStampLen), nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			st, err := Parse(tc.stamp)
			if err == nil {
				t.Fatalf("got %+v, want an error", st)
			}
			if !errors.Is(err, ErrInvalidStamp) {
				t.Errorf("got %v, want it to wrap ErrInvalidStamp", err)
			}
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Errorf("got %v, want it to wrap %v", err, tc.also)
			}
			if !reflect.DeepEqual(st, dnsstamps.ServerStamp{}) {
				t.Errorf("got %+v with the error, want a zero stamp", st)
			}
		})
	}
}

// TestParseSchemeWithoutSlashes follows go-dnsstamps, which accepts
// "sdns:" without "//".
func TestParseSchemeWithoutSlashes(t *testing.T) {
	want, err := Parse(goDNSStampsExample)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("sdns:" + strings.TrimPrefix(goDNSStampsExample, "sdns://"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestFormatUnencodable(t *testing.T) {
	pk := seqKey()
	for _, tc := range []struct {
		desc string
		st   dnsstamps.ServerStamp
	}{
		{"unknown protocol", dnsstamps.ServerStamp{Proto: 0x42, ServerAddrStr: "192.0.2.1:443"}},
		{"provider name of 256 bytes", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCrypt,
			ServerAddrStr: "192.0.2.1:443", ServerPk: pk, ProviderName: strings.Repeat("a", 256)}},
		{"key of 256 bytes", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCrypt,
			ServerAddrStr: "192.0.2.1:443", ServerPk: make([]byte, 256), ProviderName: "x"}},
		{"DoH path of 256 bytes", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDoH,
			ProviderName: "doh.example.com", Path: "/" + strings.Repeat("p", 255)}},
		{"DoH hash of 128 bytes", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDoH,
			ProviderName: "doh.example.com", Path: "/", Hashes: [][]byte{make([]byte, 128)}}},
		{"DoT bootstrap IP of 128 bytes", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeTLS,
			ProviderName: "dot.example.com", BootstrapIPs: []string{strings.Repeat("1", 128)}}},
		{"plain address of 256 bytes", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypePlain,
			ServerAddrStr: strings.Repeat("1", 256)}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := Format(tc.st); got != "" {
				t.Errorf("got %q, want \"\"", got)
			}
		})
	}
	// 255 bytes still fit.
	st := dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCrypt,
		ServerAddrStr: "192.0.2.1:443", ServerPk: pk, ProviderName: strings.Repeat("a", 255)}
	if Format(st) == "" {
		t.Error("provider name of 255 bytes: got \"\", want a stamp")
	}
}

func TestNewDNSCryptErrors(t *testing.T) {
	pk := seqKey()
	for _, tc := range []struct {
		desc, addr, name string
		pk               ed25519.PublicKey
		want             error
	}{
		{"host name", "resolver.example.com", "2.dnscrypt-cert.example.com", pk, ErrInvalidAddress},
		{"empty address", "", "2.dnscrypt-cert.example.com", pk, ErrInvalidAddress},
		{"empty name", "192.0.2.1", "", pk, ErrInvalidProviderName},
		{"name of 256 bytes", "192.0.2.1", strings.Repeat("n", 256), pk, ErrInvalidProviderName},
		{"nil key", "192.0.2.1", "2.dnscrypt-cert.example.com", nil, ErrInvalidProviderKey},
		{"short key", "192.0.2.1", "2.dnscrypt-cert.example.com", pk[:16], ErrInvalidProviderKey},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			st, err := NewDNSCrypt(tc.addr, tc.name, tc.pk, 0)
			if !errors.Is(err, tc.want) {
				t.Errorf("got %+v, %v; want an error wrapping %v", st, err, tc.want)
			}
		})
	}
}

// TestNewDNSCryptCopiesKey checks the stamp does not alias the caller's key.
func TestNewDNSCryptCopiesKey(t *testing.T) {
	pk := seqKey()
	st, err := NewDNSCrypt("192.0.2.1", "2.dnscrypt-cert.example.com", pk, 0)
	if err != nil {
		t.Fatal(err)
	}
	pk[0] = 0xff
	if st.ServerPk[0] != 0 {
		t.Errorf("key byte 0: got %x, want 00", st.ServerPk[0])
	}
}

// TestParseShortStamps covers stamps valid by the specification that
// go-dnsstamps refuses as too short (DNSCrypt under 66 bytes, relays under
// 9): Parse must read them, or Parse(Format(st)) would fail for them.
func TestParseShortStamps(t *testing.T) {
	pk := seqKey()
	for _, tc := range []struct {
		desc  string
		stamp string
		want  dnsstamps.ServerStamp
	}{
		{"DNSCrypt, 12 bytes of address and name",
			rawDNSCrypt(3, "192.0.2.1", pk, "2.p"),
			dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCrypt, Props: 3, ServerAddrStr: "192.0.2.1:443", ServerPk: pk, ProviderName: "2.p"}},
		{"DNSCrypt, 65 bytes",
			rawDNSCrypt(0, "[::]", pk, strings.Repeat("n", 17)),
			dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCrypt, ServerAddrStr: "[::]:443", ServerPk: pk, ProviderName: strings.Repeat("n", 17)}},
		{"DNSCrypt with a port",
			rawDNSCrypt(0, "[::1]:53", pk, "2.p"),
			dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCrypt, ServerAddrStr: "[::1]:53", ServerPk: pk, ProviderName: "2.p"}},
		{"relay",
			rawStamp([]byte{0x81}, lp("[::]")),
			dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCryptRelay, ServerAddrStr: "[::]:443"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := Parse(tc.stamp)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if s := Format(got); s != tc.stamp {
				t.Errorf("Format: got %s, want %s", s, tc.stamp)
			}
		})
	}
	for _, tc := range []struct{ desc, stamp string }{
		{"DNSCrypt, 31-byte key", rawDNSCrypt(0, "192.0.2.1", pk[:31], "2.p")},
		{"DNSCrypt, empty name", rawDNSCrypt(0, "192.0.2.1", pk, "")},
		{"DNSCrypt, host name", rawDNSCrypt(0, "a.example", pk, "2.p")},
		{"DNSCrypt, length past the end", rawStamp([]byte{0x01}, props(0), lp("192.0.2.1"), []byte{33}, pk, lp("2.p"))[:60]},
		{"DNSCrypt, trailing byte", rawStamp([]byte{0x01}, props(0), lp("192.0.2.1"), []byte{32}, pk, lp("2.p"), []byte{0})},
		{"DNSCrypt, no properties", rawStamp([]byte{0x01, 0, 0})},
		{"relay, empty", rawStamp([]byte{0x81}, lp(""))},
		{"relay, host name", rawStamp([]byte{0x81}, lp("a.b"))},
		{"relay, no length", rawStamp([]byte{0x81})},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if st, err := Parse(tc.stamp); !errors.Is(err, ErrInvalidStamp) {
				t.Errorf("got %+v, %v; want an error wrapping ErrInvalidStamp", st, err)
			}
		})
	}
}

// TestProviderNameVerbatim: a DNSCrypt provider name is the protocol's to
// judge (dnscrypt.CheckProviderName, applied by the runtime), not this
// package's. Parse, NewDNSCrypt and ParseCSV keep any name that a stamp
// can hold, byte for byte, and Format writes it back.
func TestProviderNameVerbatim(t *testing.T) {
	pk := seqKey()
	for _, name := range []string{"2.dnscrypt cert.example", "2.dnscrypt-cert.example\n", "2.x..y", "2.x\\046y", strings.Repeat("n", 255)} {
		st, err := Parse(rawDNSCrypt(7, "192.0.2.1", pk, name))
		if err != nil || st.ProviderName != name {
			t.Errorf("Parse with provider name %q: got %q, %v", name, st.ProviderName, err)
			continue
		}
		if back, err := Parse(Format(st)); err != nil || back.ProviderName != name {
			t.Errorf("round trip of provider name %q: got %q, %v", name, back.ProviderName, err)
		}
		if st, err := NewDNSCrypt("192.0.2.1", name, pk, 0); err != nil || st.ProviderName != name {
			t.Errorf("NewDNSCrypt with provider name %q: got %q, %v", name, st.ProviderName, err)
		}
	}
	list, err := ParseCSV(strings.NewReader(csvHeader + "spaced,,,,,,,yes,yes,no,192.0.2.1,\"2.dnscrypt cert.example\"," + orgFRKey + ",\n"))
	if err != nil || len(list) != 1 || list[0].Stamp.ProviderName != "2.dnscrypt cert.example" {
		t.Errorf("ParseCSV: got %+v, %v; want the row with its provider name as written", list, err)
	}
}
