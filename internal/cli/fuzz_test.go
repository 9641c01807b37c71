package cli

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"
)

// fuzzEnv never touches the disk or the user database.
func fuzzEnv() *Env {
	return &Env{
		Open: memFiles(map[string]string{
			"/l.csv": randomCSV,
			"/k":     "0101" + testSKHex + "\n",
		}),
		LookupUser: func(name string) (*User, error) {
			if name == "dnscrypt" {
				return &User{Name: name, UID: 900, GID: 900}, nil
			}
			return nil, errors.New("unknown user")
		},
	}
}

// FuzzParseArgs: any argv gives options or an *ExitError, never a panic;
// so does planning with them. The scan of checkEgress finds --tor and
// --proxy wherever the parser takes them.
func FuzzParseArgs(f *testing.F) {
	for _, seed := range []string{
		"",
		"-dT",
		"--tcp-only\x00--daemonize\x00--user=dnscrypt\x00--local-port=5800",
		"-a\x00[::1]:53\x00-e4096\x00-n\x00100\x00-m7",
		"-R\x00good\x00-L\x00/l.csv\x00-r\x00192.0.2.1:5353",
		"-r\x00192.0.2.1\x00-N\x002.dnscrypt-cert.x\x00-k\x00" + scalewayKey,
		"--tor\x00--proxy=socks5://u:p@127.0.0.1:9150\x00--isolation=query\x00--isolation-epoch=1m",
		"--stamp=" + scalewayStmp + "\x00-K\x00/k",
		"--re=x", "---", "-", "--", "-t\x0060", "-X\x00p", "--pid-file", "-P\x0065536", "-Zx\x00extra",
		"--ephemeral-keys=maybe", "-E=false", "-test.v", "--proxy=[::1]", "-r\x00a.onion\x00--tor",
		"-R\x00good,random:2\x00-L\x00/l.csv", "-R\x00random:1,\x00-R\x00x", "--stamp=" + scalewayStmp + "\x00--stamp=" + scalewayStmp,
		"-r\x00tls://192.0.2.1\x00-r\x00192.0.2.2\x00--resolver-port=53\x00-N\x002.x\x00-k\x00" + scalewayKey,
		"--selection=rotate\x00--hedge=no\x00--hedge-other-resolver\x00-r\x00tcp://192.0.2.1\x00-r\x00https://[::1]/q",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var args []string
		if s != "" {
			args = strings.Split(s, "\x00")
		}
		o, err := ParseArgs(args)
		if err != nil {
			ee, ok := errors.AsType[*ExitError](err)
			if !ok || (ee.Code != ExitFailure && ee.Code != ExitPlugin) || ee.Msg == "" {
				t.Fatalf("ParseArgs(%q): %T %v", args, err, err)
			}
			return
		}
		// The egress check finds every proxy the parser turns on.
		if (o.Tor || o.Proxy != "") && len(proxyRequests(args, memFiles(nil))) == 0 {
			t.Fatalf("ParseArgs(%q) turns on Tor %v or proxy %q; the scan finds nothing", args, o.Tor, o.Proxy)
		}
		if o.Help || o.Version {
			return
		}
		if _, err := o.Plan(fuzzEnv()); err != nil {
			if ee, ok := errors.AsType[*ExitError](err); !ok || ee.Code != ExitFailure || ee.Msg == "" {
				t.Fatalf("Plan(%q): %T %v", args, err, err)
			}
		}
	})
}

// FuzzParseConfig: any file gives arguments that are all known long
// options (so parsing them can only fail on a value), or an *ExitError.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("testdata/dnscrypt-proxy.conf"); err == nil {
		f.Add(b)
	}
	for _, seed := range []string{
		"", "# comment\n", "TCPOnly yes\nLocalAddress 127.0.0.1:5353 # c\n",
		"ProviderKey \"E801 B84E\"\n", "LogFile = /var/log/x y\n", "Include inc.conf\n", "Include loop.conf\n",
		"BlockIPv6 no\nLocalCache off min-ttl:60\n", "BlackList domains:x\n", "Daemonize maybe\n",
		"\xef\xbb\xbfTest 60\r\n", "User\t:\tdnscrypt\n", "ProviderKey \"\"\n", "=\n", ":x\n", "Stamp\x00x\n",
	} {
		f.Add([]byte(seed))
	}
	files := memFiles(map[string]string{
		"inc.conf":  "LogLevel 7\n",
		"loop.conf": "Include loop.conf\n",
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		args, err := ParseConfig(bytes.NewReader(data), "f.conf", files)
		if err != nil {
			if ee, ok := errors.AsType[*ExitError](err); !ok || ee.Msg == "" {
				t.Fatalf("ParseConfig(%q): %T %v", data, err, err)
			}
			return
		}
		for _, a := range args {
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") || strings.ContainsAny(a, "\n\x00") {
				t.Fatalf("ParseConfig(%q): bad argument %q", data, a)
			}
			if opt, _ := lookupLong(name); opt == nil || opt.long != name {
				t.Fatalf("ParseConfig(%q): unknown option %q", data, a)
			}
		}
		if _, err := ParseArgs(args); err != nil {
			if ee, ok := errors.AsType[*ExitError](err); !ok || ee.Hint {
				t.Fatalf("ParseArgs(%q) from a config file: %v", args, err)
			}
		}
	})
}

// FuzzParseClientKey: a parsed key's public half is X25519 of its secret.
func FuzzParseClientKey(f *testing.F) {
	for _, seed := range []string{
		"0101" + testSKHex, "0101" + testSKHex + "\n", testSKHex, "01 01 77:07-6d", "", "0101", "zz", "0:1",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kp, err := ParseClientKey(data)
		if err != nil {
			if !errors.Is(err, ErrClientKey) {
				t.Fatalf("ParseClientKey(%q): %v, want ErrClientKey", data, err)
			}
			return
		}
		pk, err := curve25519.X25519(kp.Secret[:], curve25519.Basepoint)
		if err != nil || !bytes.Equal(pk, kp.Public[:]) {
			t.Fatalf("ParseClientKey(%q): public key %x, want %x", data, kp.Public, pk)
		}
	})
}
