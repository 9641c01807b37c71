package cli

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// A secret key and the files that hold it.
const (
	testSKHex = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a" // RFC 7748 6.1, Alice
	testPKHex = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
)

func TestParseClientKey(t *testing.T) {
	upper := strings.ToUpper(testSKHex)
	var colons []string
	for i := 0; i < len(upper); i += 4 {
		colons = append(colons, upper[i:i+4])
	}
	tests := []struct {
		name string
		in   string
	}{
		{"1.x format", "0101" + testSKHex},
		{"1.x format with newline", "0101" + testSKHex + "\n"},
		{"1.x format with CRLF and spaces", "0101" + testSKHex + " \r\n"},
		{"1.x format, colon groups", "0101:" + strings.Join(colons, ":")},
		{"1.x format, dashes and spaces", "01 01-" + strings.Join(colons, " ")},
		{"bare key", testSKHex},
		{"bare key, upper case, newline", upper + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ParseClientKey([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseClientKey(%q): %v", tt.in, err)
			}
			if got := hex.EncodeToString(kp.Secret[:]); got != testSKHex {
				t.Errorf("secret: got %s, want %s", got, testSKHex)
			}
			if got := hex.EncodeToString(kp.Public[:]); got != testPKHex {
				t.Errorf("public: got %s, want %s", got, testPKHex)
			}
		})
	}
}

func TestParseClientKeyErrors(t *testing.T) {
	tests := []struct {
		name, in, msg string
	}{
		{"empty", "", "no hex digits"},
		{"newline only", "\n", "no hex digits"},
		{"short", "0101" + testSKHex[:62], "33 bytes"},
		{"long", "0101" + testSKHex + "00", "longer than 34 bytes"},
		{"odd digits", "0101" + testSKHex + "0", "odd number"},
		{"wrong header", "0202" + testSKHex, "do not start with 01 01"},
		{"bad character", "0101" + testSKHex[:10] + "g" + testSKHex[11:], "invalid character 'g'"},
		{"separator inside a byte", "0:101" + testSKHex, "splits a byte"},
		{"tab separator", "01\t01" + testSKHex, "invalid character '\\t'"},
		{"newline inside", "0101\n" + testSKHex, "invalid character '\\n'"},
		{"zero key", strings.Repeat("0", 64), "all zeros"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ParseClientKey([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseClientKey(%q) = %x, want an error", tt.in, kp.Secret)
			}
			if !errors.Is(err, ErrClientKey) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("ParseClientKey(%q): got %v, want ErrClientKey and %q", tt.in, err, tt.msg)
			}
		})
	}
}
