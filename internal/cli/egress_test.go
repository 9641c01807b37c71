package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
)

var egressFiles = map[string]string{
	"/c/tor.conf":      "# Tor\nTor yes\n",
	"/c/tor-off.conf":  "Tor no # direct\nTCPOnly yes\n",
	"/c/proxy.conf":    "LocalAddress 127.0.0.1:53\nProxy = socks5://127.0.0.1:9150\n",
	"/c/comment.conf":  "# Tor yes\n#Proxy socks5://127.0.0.1:1\n",
	"/c/spelling.conf": "\xef\xbb\xbf  TOR:on\r\n",
	"/c/include.conf":  "TCPOnly yes\nInclude sub/tor.conf\n",
	"/c/sub/tor.conf":  "tor\t1\n",
	"/c/absolute.conf": "include /c/proxy.conf\n",
	"/c/loop.conf":     "Include loop.conf\n",
	"/c/torloop.conf":  "Tor yes\nInclude torloop.conf\n",
	"/c/bad.conf":      "Tor maybe\nProxy\nNoSuch x\n",
	"/c/torrent.conf":  "Torrent yes\nProxyAddress 1\n",
}

func TestProxyRequests(t *testing.T) {
	open := memFiles(egressFiles)
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{nil, nil},
		{[]string{"-d", "-m", "7", "--loglevel=7"}, nil},
		{[]string{"--tor"}, []string{"--tor"}},
		{[]string{"--tor=yes"}, []string{"--tor=yes"}},
		{[]string{"--tor=maybe"}, []string{"--tor=maybe"}}, // refused later, but a request
		{[]string{"--tor=false"}, nil},
		{[]string{"--tor=0", "--tor=off", "--tor=NO"}, nil},
		{[]string{"--tor=false", "--tor"}, []string{"--tor"}},
		{[]string{"--proxy=socks5://127.0.0.1:1080"}, []string{"--proxy=socks5://127.0.0.1:1080"}},
		{[]string{"--proxy", "socks5://127.0.0.1:1080"}, []string{"--proxy"}},
		{[]string{"--proxy="}, []string{"--proxy="}},
		{[]string{"--", "--tor"}, nil}, // a file named --tor
		{[]string{"/c/tor.conf"}, []string{"/c/tor.conf:2: Tor"}},
		{[]string{"-m", "7", "/c/tor.conf", "-d"}, []string{"/c/tor.conf:2: Tor"}},
		{[]string{"--", "/c/tor.conf"}, []string{"/c/tor.conf:2: Tor"}},
		{[]string{"/c/tor-off.conf"}, nil},
		{[]string{"/c/proxy.conf"}, []string{"/c/proxy.conf:2: Proxy"}},
		{[]string{"/c/comment.conf"}, nil},
		{[]string{"/c/spelling.conf"}, []string{"/c/spelling.conf:1: TOR"}},
		{[]string{"/c/include.conf"}, []string{"/c/sub/tor.conf:1: tor"}},
		{[]string{"/c/absolute.conf"}, []string{"/c/proxy.conf:2: Proxy"}},
		{[]string{"/c/loop.conf"}, nil},
		{[]string{"/c/bad.conf"}, []string{"/c/bad.conf:1: Tor", "/c/bad.conf:2: Proxy"}},
		{[]string{"/c/torrent.conf"}, nil},
		{[]string{"/c/missing.conf", "--tor"}, []string{"--tor"}},
		{[]string{"/c/tor.conf", "/c/proxy.conf"}, []string{"/c/tor.conf:2: Tor", "/c/proxy.conf:2: Proxy"}},
		// Values of options are read as files too: on the safe side.
		{[]string{"-Z", "/c/tor.conf"}, []string{"/c/tor.conf:2: Tor"}},
	} {
		if got := proxyRequests(tt.args, open); !slices.Equal(got, tt.want) {
			t.Errorf("proxyRequests(%q): got %q, want %q", tt.args, got, tt.want)
		}
	}
	// An Include loop stops at the depth limit.
	if got := proxyRequests([]string{"/c/torloop.conf"}, open); len(got) != MaxIncludeDepth {
		t.Errorf("Include loop: %d requests, want %d", len(got), MaxIncludeDepth)
	}
}

// TestCheckEgress hands checkEgress plans that do not match their command
// line, as a bug in the parsing or the planning would make them.
func TestCheckEgress(t *testing.T) {
	env := testEnv()
	open := memFiles(egressFiles)
	env.Open = open
	direct := &Plan{}
	viaSOCKS := &Plan{Proxy: proxy.Config{SOCKS: &proxy.SOCKS{Addr: "127.0.0.1:9050"}}}
	noAddr := &Plan{Proxy: proxy.Config{SOCKS: &proxy.SOCKS{}}}
	for _, tt := range []struct {
		args []string
		plan *Plan
		want string // "" for no error
	}{
		{nil, direct, ""},
		{[]string{"-d", "/c/tor-off.conf"}, direct, ""},
		{[]string{"--tor"}, viaSOCKS, ""},
		{[]string{"/c/tor.conf", "--tor=false"}, viaSOCKS, ""},
		{[]string{"--tor"}, direct, "Refusing to start: Tor or a SOCKS proxy is asked for (--tor), but the options as a whole would send queries directly"},
		{[]string{"--proxy=socks5://127.0.0.1:1"}, noAddr, "(--proxy=socks5://127.0.0.1:1)"},
		// 1.x's mistake: a file with options, read as no file at all.
		{[]string{"/c/tor.conf", "--loglevel=7"}, direct, "(/c/tor.conf:2: Tor)"},
		{[]string{"-m", "7", "/c/include.conf"}, direct, "(/c/sub/tor.conf:1: tor)"},
		{[]string{"/c/proxy.conf", "/c/tor.conf"}, direct, "(/c/proxy.conf:2: Proxy, /c/tor.conf:2: Tor)"},
	} {
		err := checkEgress(tt.args, env, tt.plan)
		if tt.want == "" {
			if err != nil {
				t.Errorf("checkEgress(%q, %+v): %v", tt.args, tt.plan.Proxy.SOCKS, err)
			}
			continue
		}
		if ee, ok := errors.AsType[*ExitError](err); !ok || ee.Code != ExitFailure || !strings.Contains(ee.Msg, tt.want) {
			t.Errorf("checkEgress(%q, %+v): got %v, want exit 1 and %q", tt.args, tt.plan.Proxy.SOCKS, err, tt.want)
		}
	}
}

// TestCheckEgressSkipsFIFO: a named pipe given as an argument is not
// opened (that would block until a writer comes).
func TestCheckEgressSkipsFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := checkEgress([]string{fifo}, DefaultEnv(), &Plan{}); err != nil {
		t.Errorf("got %v", err)
	}
}

// TestMainEgress runs the program with command lines whose plan would be
// direct although they ask for a proxy: it must refuse to start.
func TestMainEgress(t *testing.T) {
	dir := t.TempDir()
	torConf := filepath.Join(dir, "tor.conf")
	if err := os.WriteFile(torConf, []byte("Tor yes\nResolverName "+defaultResolverName+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{torConf, "--tor=false"}, "[ERROR] Refusing to start: Tor or a SOCKS proxy is asked for (" + torConf + ":1: Tor)"},
		{[]string{"--tor", "--tor=false"}, "(--tor)"},
		{[]string{"--proxy="}, "(--proxy=)"},
	} {
		code, out, errOut := runMain(t, tt.args...)
		if code != ExitFailure || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: got exit %d stdout %q stderr %q, want exit 1 and %q", tt.args, code, out, errOut, tt.want)
		}
	}
	// With the file and options together, Tor is on.
	_, p, err := load([]string{torConf, "--loglevel=7"}, testEnv())
	if err != nil || p.Proxy.SOCKS == nil || p.Proxy.SOCKS.Addr != torSOCKSAddr || p.Log.MaxPriority != 7 {
		t.Errorf("Tor file and an option: got %+v, %v", p, err)
	}
}

// FuzzProxyRequests: whenever a configuration file turns Tor or a proxy
// on, the independent scan finds the request in it.
func FuzzProxyRequests(f *testing.F) {
	for _, s := range egressFiles {
		f.Add([]byte(s))
	}
	for _, seed := range []string{
		"Tor yes\n", "tor=1", "TOR : true # c", "Proxy socks5://127.0.0.1:9050\n", "\xef\xbb\xbfProxy 127.0.0.1:1\n",
		"Include inc.conf\n", "  Tor\tyes\r\n", "Tor no\nProxy 1.2.3.4:5\n", "Tor\vyes\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		files := memFiles(map[string]string{"f.conf": string(data), "inc.conf": "Tor yes\n"})
		args, err := ParseConfig(nil, "f.conf", files)
		if err != nil {
			return
		}
		o, err := ParseArgs(args)
		if err != nil || (!o.Tor && o.Proxy == "") {
			return
		}
		if len(proxyRequests([]string{"f.conf"}, files)) == 0 {
			t.Fatalf("%q turns on Tor %v or proxy %q; the scan finds nothing", data, o.Tor, o.Proxy)
		}
	})
}
