package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLIConfigLeak starts the binary with every mix of configuration
// files and options that asks for Tor or a SOCKS proxy (in the file, on
// the command line, or both; options before, after and around the file;
// two files; files that do not parse; values that are refused) inside a
// leakNS, and requires that the namespace sends no packet except to the
// SOCKS proxy, and that the process either answers through it or exits
// with an error naming the problem. dnscrypt-proxy 1.x ignored a
// configuration file given with options ("tor.conf -d") and used its
// default resolver, directly.
//
// The SOCKS proxy is the lab's microsocks, reached through a forwarder on
// the host end of the veth link and, for Tor's default 127.0.0.1:9050, a
// second forwarder inside the namespace.
func TestCLIConfigLeak(t *testing.T) {
	lab := sharedLab(t)
	proxyPort := freePort(t)
	ns := newLeakNS(t, leakNSConfig{ClientPorts: []int{proxyPort}, LoopbackDoors: []int{9050}})
	startForwarder(t, nil, ns.Door(), lab.Socks)
	startForwarder(t, ns.Exec, "127.0.0.1:9050", ns.Door())

	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", proxyPort)
	// microsocks takes no user names: no isolation by SOCKS credentials.
	resolver := fmt.Sprintf("ResolverAddress %s\nProviderName %s\nProviderKey %s\nLocalAddress %s\nIsolation none\n",
		lab.Go, lab.ProviderName, lab.ProviderKeyColon, listen)
	proxyURL := "socks5://" + ns.Door()
	files := map[string]string{
		"tor.conf":      "# Tor through the forwarder\nTor yes\nProxy " + proxyURL + "\n" + resolver,
		"toronly.conf":  "Tor yes # Tor's default SOCKS port\n" + resolver,
		"proxy.conf":    "Proxy " + proxyURL + "\n" + resolver,
		"plain.conf":    resolver,
		"bad.conf":      "Tor yes\n" + resolver + "NoSuchProperty 1\n",
		"badproxy.conf": "Proxy socks5://tor.example:9050\n" + resolver,
		"include.conf":  resolver + "Include tor-part.conf\n",
		"tor-part.conf": "tor = on\n",
		"daemon.conf":   "Tor yes\nProxy " + proxyURL + "\n" + resolver + "LogFile " + filepath.Join(dir, "daemon.log") + "\nPidFile " + filepath.Join(dir, "daemon.pid") + "\n",
		"torfalse.conf": "Tor no\n" + resolver,
		// Without Isolation, which needs a proxy: the plan would be direct.
		"tornoiso.conf":   "Tor yes\n" + strings.Replace(resolver, "Isolation none\n", "", 1),
		"proxynoiso.conf": "Proxy " + proxyURL + "\n" + strings.Replace(resolver, "Isolation none\n", "", 1),
		"loglevel.conf":   "Tor yes\nLogLevel 99\n" + resolver,
		"unreadable.dir":  "",
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if strings.HasSuffix(name, ".dir") {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := func(name string) string { return filepath.Join(dir, name) }

	const (
		serve  = "serve"  // answers through SOCKS
		daemon = "daemon" // --daemonize: the parent returns 0, the daemon answers
	)
	for _, tc := range []struct {
		name string
		args []string
		// want is serve, daemon, or the exit status and a text of the
		// output: "1 text".
		want string
	}{
		{"file then option", []string{f("tor.conf"), "--loglevel=7"}, serve},
		{"option then file", []string{"--loglevel=7", f("tor.conf")}, serve},
		{"short option with its value then file", []string{"-m", "7", f("tor.conf")}, serve},
		{"options around the file", []string{"-m", "7", f("tor.conf"), "--tcp-only"}, serve},
		{"file then -d", []string{f("daemon.conf"), "-d"}, daemon},
		{"Tor's default port only, then option", []string{f("toronly.conf"), "-m", "7"}, serve},
		{"Proxy only in the file", []string{f("proxy.conf"), "-E"}, serve},
		{"--tor and a file without Tor", []string{"--tor", f("plain.conf")}, serve},
		{"file without Tor then --proxy", []string{f("plain.conf"), "--proxy=" + proxyURL}, serve},
		{"Tor in an included file", []string{"-m", "7", f("include.conf")}, serve},
		{"Tor no in the file, --tor", []string{f("torfalse.conf"), "--tor"}, serve},
		{"file alone", []string{f("tor.conf")}, serve},
		{"--test with the file", []string{f("tor.conf"), "--test=0"}, "0 Chosen certificate"},
		{"--version with the file", []string{f("tor.conf"), "--version"}, "0 dnscrypt-proxy"},
		{"two files", []string{f("tor.conf"), f("plain.conf")}, "1 " + f("plain.conf")},
		{"two files after an option", []string{"-m", "7", f("plain.conf"), f("tor.conf")}, "1 " + f("tor.conf")},
		{"file that does not parse, then option", []string{f("bad.conf"), "-m", "7"}, "1 unknown property [NoSuchProperty]"},
		{"--tor and a file that does not parse", []string{"--tor", f("bad.conf")}, "1 unknown property [NoSuchProperty]"},
		{"--tor and a missing file", []string{"--tor", f("missing.conf")}, "1 Unable to read the configuration file"},
		{"--tor and a directory", []string{"--tor", f("unreadable.dir")}, "1 Unable to read the configuration file"},
		{"--tor and a file with a bad proxy", []string{"--tor", f("badproxy.conf")}, "1 Invalid proxy"},
		{"Tor in the file, --tor=false", []string{f("tornoiso.conf"), "--tor=false"}, "1 Refusing to start"},
		{"Tor and Proxy in the file, --tor=false", []string{f("tor.conf"), "--tor=false"}, serve}, // Proxy stays
		{"Proxy in the file, empty --proxy", []string{"--proxy=", f("proxynoiso.conf")}, "1 Refusing to start"},
		{"Tor in the file, --tor=false, Isolation", []string{f("toronly.conf"), "--tor=false"}, "1 --isolation needs --proxy or --tor"},
		{"Tor in the file, log level out of range", []string{f("tor.conf"), "--loglevel=99"}, "1 want 0..7"},
		{"log level out of range in a Tor file", []string{f("loglevel.conf"), "-d"}, "1 want 0..7"},
		{"user without password in --proxy", []string{f("plain.conf"), "--proxy=socks5://user@" + ns.Door()}, "1 password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ns.Leaks(t)
			p := launchProxy(t, ns.Exec, tc.args...)
			p.stopped = true // this test checks how it ends
			t.Cleanup(func() {
				p.terminate(syscall.SIGKILL)
				killInNetns(ns.Name, proxyBinary(t)) // daemons
			})
			// answered: the lab's record came back. (A status alone is not
			// enough: with nothing listening, dig's TCP connection may
			// meet itself on loopback and read its own query back.) A TXT
			// record: no address for a rebinding filter to take out.
			answered := func() (bool, string) {
				r := runDigCmd(t, ns.Exec, "dig", "@127.0.0.1", "-p", strconv.Itoa(proxyPort), "+tcp", "+time=2", "txt.lab.test", "TXT")
				return r.Status == "NOERROR" && r.flag("qr") && slices.Equal(r.Answer, []string{"txt.lab.test.\t0\tIN\tTXT\t\"hello from lab.test\""}), r.Out
			}
			// Wait for the outcome; stop at the first leak.
			const within = 60 * time.Second
			deadline := time.Now().Add(within)
			served := false
			for !served && !p.exited() {
				if n := ns.Leaks(t) - before; n > 0 {
					t.Fatalf("%d packets sent outside the SOCKS proxy\n%s", n, p.output())
				}
				if time.Now().After(deadline) {
					t.Fatalf("neither an answer nor an exit within %v\n%s", within, p.output())
				}
				if tc.want == serve {
					served, _ = answered()
				} else {
					time.Sleep(100 * time.Millisecond)
				}
			}
			switch tc.want {
			case serve:
				if !served {
					t.Fatalf("exited with status %d instead of answering\n%s", p.cmd.ProcessState.ExitCode(), p.output())
				}
				if code := p.stop(t, syscall.SIGTERM); code != 0 {
					t.Errorf("exit status %d after SIGTERM\n%s", code, p.output())
				}
			case daemon:
				if code := p.cmd.ProcessState.ExitCode(); code != 0 {
					t.Fatalf("--daemonize: exit status %d\n%s", code, p.output())
				}
				pid := cliReadPid(t, f("daemon.pid"))
				cliKillAtEnd(t, pid)
				if ok, out := answered(); !ok {
					t.Errorf("the daemon does not answer:\n%s", out)
				}
				syscall.Kill(pid, syscall.SIGTERM)
				cliWaitGone(t, pid, 15*time.Second)
			default:
				code, text, _ := strings.Cut(tc.want, " ")
				if got := strconv.Itoa(p.cmd.ProcessState.ExitCode()); got != code || !strings.Contains(p.output(), text) {
					t.Errorf("exit status %s, output:\n%s\nwant status %s and %q", got, p.output(), code, text)
				}
			}
			if n := ns.Leaks(t) - before; n > 0 {
				log, _ := os.ReadFile(f("daemon.log"))
				t.Errorf("%d packets sent outside the SOCKS proxy\n%s%s", n, p.output(), log)
			}
		})
	}
}
