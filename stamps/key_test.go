package stamps

import (
	"bytes"
	"errors"
	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"strings"
	"testing"
)

func TestParseProviderKey(t *testing.T) {
	want := mustHex(t, labKeyHex)
	for _, tc := range []struct{ desc, in string }{
		{"1.x colon form", labKeyColon},
		{"plain hex", labKeyHex},
		{"upper-case plain hex", strings.ToUpper(labKeyHex)},
		{"lower-case colon form", strings.ToLower(labKeyColon)},
		{"mixed case", "e3C2:f35A:31c1:B6ff:1793:3968:5575:060b:7cD6:7861:0b28:bF05:18d5:b3D6:b6aC:d27F"},
		{"spaces instead of colons", strings.ReplaceAll(labKeyColon, ":", " ")},
		{"colon per byte", "E3:C2:F3:5A:31:C1:B6:FF:17:93:39:68:55:75:06:0B:7C:D6:78:61:0B:28:BF:05:18:D5:B3:D6:B6:AC:D2:7F"},
		{"surrounding white space and newline", "  " + labKeyColon + "\r\n"},
		{"tabs and doubled colons", strings.ReplaceAll(labKeyColon, ":", "\t::")},
		{"leading and trailing colon", ":" + labKeyColon + ":"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ParseProviderKey(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
		})
	}
}

func TestParseProviderKeyErrors(t *testing.T) {
	groups := strings.Split(labKeyColon, ":")
	for _, tc := range []struct {
		desc, in string
		msg      string // part of the error text
	}{
		{"empty", "", "no hex digits"},
		{"separators only", " : : ", "no hex digits"},
		{"15 groups", strings.Join(groups[:15], ":"), "30 bytes, want 32"},
		{"17 groups", labKeyColon + ":ABCD", "longer than 32 bytes"},
		{"one byte short", labKeyHex[:62], "31 bytes, want 32"},
		{"odd digit count", labKeyHex[:63], "odd number of hex digits (63)"},
		{"extra nibble", labKeyHex + "0", "odd number of hex digits (65)"},
		{"group of three", "E3C:2F35A" + labKeyHex[8:], `separator ':' splits a byte`},
		{"non-hex letter", "G3C2" + labKeyHex[4:], `invalid character 'G' at offset 0`},
		{"dash", strings.ReplaceAll(labKeyColon, ":", "-"), `invalid character '-' at offset 4`},
		{"0x prefix", "0x" + labKeyHex, `invalid character 'x'`},
		{"NUL byte", labKeyHex[:10] + "\x00" + labKeyHex[10:], `invalid character '\x00' at offset 10`},
		{"non-ASCII", "é" + labKeyHex, "invalid character"},
		{"64-byte key", labKeyHex + labKeyHex, "longer than 32 bytes"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			pk, err := ParseProviderKey(tc.in)
			if err == nil {
				t.Fatalf("got %x, want an error", pk)
			}
			if !errors.Is(err, ErrInvalidProviderKey) {
				t.Errorf("got %v, want it to wrap ErrInvalidProviderKey", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %q, want it to contain %q", err, tc.msg)
			}
			if pk != nil {
				t.Errorf("got key %x with the error, want nil", pk)
			}
		})
	}
}

// TestFingerprintForm: certs.Fingerprint writes provider keys in the 1.x
// form ParseProviderKey reads.
func TestFingerprintForm(t *testing.T) {
	if got := certs.Fingerprint(mustHex(t, labKeyHex)); got != labKeyColon {
		t.Errorf("got %s, want %s", got, labKeyColon)
	}
	if got, want := certs.Fingerprint(seqKey()), "0001:0203:0405:0607:0809:0A0B:0C0D:0E0F:1011:1213:1415:1617:1819:1A1B:1C1D:1E1F"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got := certs.Fingerprint(nil); got != "" {
		t.Errorf("nil key: got %q, want \"\"", got)
	}
	if got, want := certs.Fingerprint([]byte{0xab, 0xcd, 0xef}), "ABCD:EF"; got != want {
		t.Errorf("3-byte key: got %s, want %s", got, want)
	}
}
