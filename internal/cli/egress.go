package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The rule this file enforces: when Tor or a SOCKS proxy is asked for
// anywhere - a Tor or Proxy property in a configuration file (included
// ones too), --tor or --proxy on the command line - nothing is ever sent
// directly. Either the plan carries the SOCKS proxy, or the program
// refuses to start. The check reads the raw inputs again on its own, so
// that no mistake in the option parsing, the configuration file reading
// or the planning can turn a proxy request into direct traffic.

// checkEgress is the check every plan passes before it runs (see
// [load]). args is the raw command line. A plan with a SOCKS proxy always
// passes; one without fails if [proxyRequests] finds a request for a
// proxy in args or in the files they name.
func checkEgress(args []string, env *Env, p *Plan) error {
	if p.Proxy.SOCKS != nil && p.Proxy.SOCKS.Addr != "" {
		return nil
	}
	open := env.Open
	if open == nil {
		open = openFile
	}
	reqs := proxyRequests(args, func(path string) (io.ReadCloser, error) {
		// Only regular files: opening a FIFO would block.
		if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("not a regular file")
		}
		return open(path)
	})
	if len(reqs) == 0 {
		return nil
	}
	return setupErrorf("Refusing to start: Tor or a SOCKS proxy is asked for (%s), but the options as a whole would send queries directly; "+
		"a proxy asked for anywhere cannot be turned off elsewhere", strings.Join(reqs, ", "))
}

// proxyRequests lists where args ask for Tor or a SOCKS proxy: the
// options --tor (but not --tor=false and the like) and --proxy, and the
// properties Tor (but not "Tor no") and Proxy in every file an argument
// that is not an option names, with the files those include. It errs on
// the side of finding a request: it reads the value of an option such as
// "-l FILE" as a file too, does not mind syntax errors, and takes any
// value of Proxy, an empty one included. Files that cannot be opened are
// skipped (reading them fails later, or they are not configuration
// files).
func proxyRequests(args []string, open func(string) (io.ReadCloser, error)) []string {
	var reqs []string
	options := true
	for _, a := range args {
		switch {
		case options && a == "--":
			options = false
		case options && strings.HasPrefix(a, "--"):
			name, v, hasValue := strings.Cut(a[2:], "=")
			switch name {
			case "tor":
				if b, ok := parseBool(v); !hasValue || !ok || b {
					reqs = append(reqs, a)
				}
			case "proxy":
				reqs = append(reqs, a)
			}
		case options && strings.HasPrefix(a, "-") && a != "-":
			// Short options: neither --tor nor --proxy has one.
		default:
			reqs = append(reqs, fileProxyRequests(a, open, 0)...)
		}
	}
	return reqs
}

// fileProxyRequests is proxyRequests for one configuration file.
func fileProxyRequests(path string, open func(string) (io.ReadCloser, error), depth int) []string {
	if depth >= MaxIncludeDepth {
		return nil
	}
	f, err := open(path)
	if err != nil {
		return nil
	}
	data, _ := io.ReadAll(io.LimitReader(f, MaxConfigSize))
	f.Close()
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var reqs []string
	for n, line := range strings.Split(string(data), "\n") {
		line = trimSpace(line)
		end := 0 // the key ends as in configParser.line
		for end < len(line) && !isSpace(line[end]) && line[end] != '=' && line[end] != ':' {
			end++
		}
		key, rest := line[:end], trimSpace(line[end:])
		if rest != "" && (rest[0] == '=' || rest[0] == ':') {
			rest = trimSpace(rest[1:])
		}
		where := fmt.Sprintf("%s:%d: %s", path, n+1, key)
		switch {
		case strings.EqualFold(key, "tor"):
			v, _ := word(rest)
			if b, ok := parseBool(v); !ok || b {
				reqs = append(reqs, where)
			}
		case strings.EqualFold(key, "proxy"):
			reqs = append(reqs, where)
		case strings.EqualFold(key, "include") && rest != "":
			inc := rest
			if !filepath.IsAbs(inc) {
				inc = filepath.Join(filepath.Dir(path), inc)
			}
			reqs = append(reqs, fileProxyRequests(inc, open, depth+1)...)
		}
	}
	return reqs
}
