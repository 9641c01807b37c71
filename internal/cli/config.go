package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Limits of configuration files.
const (
	// MaxConfigSize is the largest configuration file read, per file.
	MaxConfigSize = 1 << 20
	// maxConfigLine is 1.x's SC_MAX_ARG_LENGTH.
	maxConfigLine = 65536
	// MaxIncludeDepth is 1.x's SC_MAX_RECURSION: a file at this depth of
	// Include is refused, which also ends Include loops.
	MaxIncludeDepth = 16
)

// propKind is the value syntax of a property, after 1.x's simpleconf
// patterns.
type propKind int

const (
	propRest       propKind = iota // <any*>: the rest of the line
	propWord                       // <nospace>: one word
	propDigits                     // <digits>
	propQuoted                     // <any>: one word or a "quoted string"
	propBool                       // Key? <bool>: the switch when true
	propInclude                    // Include <any*>
	propPlugin                     // a plugin property: refused
	propPluginBool                 // a boolean plugin property: refused when true
	propWindows                    // a Windows-only property: refused
)

// property maps a configuration file property to a long option.
type property struct {
	key  string
	kind propKind
	opt  string
}

var properties = []property{
	// dnscrypt-proxy 1.9.5 (src/proxy/simpleconf_dnscrypt.h).
	{"ClientKey", propRest, "client-key"},
	{"Daemonize", propBool, "daemonize"},
	{"EDNSPayloadSize", propDigits, "edns-payload-size"},
	{"EphemeralKeys", propBool, "ephemeral-keys"},
	{"IgnoreTimestamps", propBool, "ignore-timestamps"},
	{"LocalAddress", propWord, "local-address"},
	{"LogFile", propRest, "logfile"},
	{"LogLevel", propDigits, "loglevel"},
	{"MaxActiveRequests", propDigits, "max-active-requests"},
	{"PidFile", propRest, "pidfile"},
	{"ProviderKey", propQuoted, "provider-key"},
	{"ProviderName", propRest, "provider-name"},
	{"ResolverAddress", propWord, "resolver-address"},
	{"ResolverName", propWord, "resolver-name"},
	{"ResolversList", propRest, "resolvers-list"},
	{"SyslogPrefix", propWord, "syslog-prefix"},
	{"Syslog", propBool, "syslog"},
	{"TCPOnly", propBool, "tcp-only"},
	{"Test", propDigits, "test"},
	{"User", propWord, "user"},
	{"BlackList", propPlugin, ""},
	{"BlockIPv6", propPluginBool, ""},
	{"QueryLogFile", propPlugin, ""},
	{"Forward", propPlugin, ""},
	{"LocalCache", propPluginBool, ""},
	{"OpenDNSIP", propPlugin, ""},
	{"OpenDNSPasswordFile", propPlugin, ""},
	{"Plugin", propPlugin, ""},
	{"Include", propInclude, ""},
	{"ServiceName", propWindows, ""},

	// New in this proxy.
	{"Stamp", propWord, "stamp"},
	{"Proxy", propWord, "proxy"},
	{"Tor", propBool, "tor"},
	{"Isolation", propWord, "isolation"},
	{"IsolationEpoch", propWord, "isolation-epoch"},
	{"Timeout", propWord, "timeout"},
	{"OptimisticData", propBool, "optimistic-data"},
	{"NoEphemeralKeys", propBool, "no-ephemeral-keys"},
	{"PrivateDomain", propWord, "private-domain"},
	{"RebindProtection", propWord, "rebind-protection"},
	{"Selection", propWord, "selection"},
	{"Hedge", propWord, "hedge"},
	{"HedgeOtherResolver", propWord, "hedge-other-resolver"},
}

func lookupProperty(key string) *property {
	for i := range properties {
		if strings.EqualFold(properties[i].key, key) {
			return &properties[i]
		}
	}
	return nil
}

// ReadConfigFile reads a dnscrypt-proxy 1.x configuration file and returns
// the equivalent command line, as 1.x did: each property becomes a long
// option ("LocalAddress 127.0.0.1:5353" is "--local-address=127.0.0.1:5353"),
// a false boolean none. See [ParseConfig] for the syntax.
func ReadConfigFile(path string) ([]string, error) {
	return ParseConfig(nil, path, openFile)
}

func openFile(path string) (io.ReadCloser, error) { return os.Open(path) }

// ParseConfig turns a configuration file in the format of dnscrypt-proxy
// 1.x into command-line arguments. If r is nil, name is opened with open;
// Include directives are always opened with open.
//
// One property per line: a name, matched ignoring case, then white space,
// '=' or ':', then the value. Empty lines and lines starting with '#' are
// ignored. Booleans are yes, on, true, 1, no, off, false or 0. Values of
// one word (addresses, numbers, booleans, names) may be followed by a
// "# comment"; file names and other values running to the end of the line
// are taken whole, as in 1.x. "Include FILE" reads FILE in place, relative
// to the directory of the including file (1.x: to the working directory),
// at most [MaxIncludeDepth] files deep. Plugin properties (BlackList,
// BlockIPv6 yes, QueryLogFile, Forward, LocalCache yes, OpenDNSIP,
// OpenDNSPasswordFile, Plugin) are refused with exit status 2.
//
// Errors are [*ExitError]s naming the file and line.
func ParseConfig(r io.Reader, name string, open func(string) (io.ReadCloser, error)) ([]string, error) {
	p := configParser{open: open}
	if err := p.file(r, name, 0); err != nil {
		return nil, err
	}
	return p.args, nil
}

type configParser struct {
	open func(string) (io.ReadCloser, error)
	args []string
}

func configErrorf(format string, args ...any) *ExitError {
	msg := fmt.Sprintf(format, args...)
	return &ExitError{Code: ExitFailure, Msg: msg, Err: fmt.Errorf("%w: %s", ErrConfig, msg)}
}

func (p *configParser) file(r io.Reader, name string, depth int) error {
	if depth >= MaxIncludeDepth {
		return configErrorf("Unable to read the configuration file [%s]: too many levels of Include (%d)", name, MaxIncludeDepth)
	}
	if r == nil {
		f, err := p.open(name)
		if err != nil {
			return configErrorf("Unable to read the configuration file [%s]: %v", name, unwrapPathError(err))
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxConfigSize+1))
	if err != nil {
		return configErrorf("Unable to read the configuration file [%s]: %v", name, unwrapPathError(err))
	}
	if len(data) > MaxConfigSize {
		return configErrorf("Unable to read the configuration file [%s]: larger than %d bytes", name, MaxConfigSize)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	for n := 1; len(data) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if len(line) > maxConfigLine {
			return configErrorf("%s:%d: line longer than %d bytes", name, n, maxConfigLine)
		}
		if err := p.line(string(line), name, n, depth); err != nil {
			return err
		}
	}
	return nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

func trimSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func (p *configParser) line(line, name string, n, depth int) error {
	line = trimSpace(line)
	if line == "" || line[0] == '#' {
		return nil
	}
	errorf := func(format string, args ...any) error {
		return configErrorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...))
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return errorf("control character %q", c)
		}
	}
	end := 0
	for end < len(line) && !isSpace(line[end]) && line[end] != '=' && line[end] != ':' {
		end++
	}
	key, rest := line[:end], trimSpace(line[end:])
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = trimSpace(rest[1:])
	}
	if key == "" {
		return errorf("syntax error: [%s]", line)
	}
	prop := lookupProperty(key)
	if prop == nil {
		return errorf("unknown property [%s]", key)
	}
	if rest == "" {
		return errorf("%s needs a value", prop.key)
	}
	switch prop.kind {
	case propPlugin:
		return pluginError(fmt.Sprintf("%s:%d: %s", name, n, prop.key))
	case propWindows:
		return platformError(fmt.Sprintf("%s:%d: %s", name, n, prop.key))
	case propInclude:
		path := rest
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(name), path)
		}
		return p.file(nil, path, depth+1)
	case propRest:
		p.args = append(p.args, "--"+prop.opt+"="+rest)
		return nil
	case propQuoted:
		v, after, err := quotedWord(rest)
		if err != nil {
			return errorf("%s: %v", prop.key, err)
		}
		if !isComment(after) {
			return errorf("%s: unexpected [%s] after the value (quote a value with spaces)", prop.key, after)
		}
		p.args = append(p.args, "--"+prop.opt+"="+v)
		return nil
	}
	v, after := word(rest)
	if prop.kind == propPluginBool {
		// "BlockIPv6 no", "LocalCache off [min-ttl:N]": nothing to do.
		b, ok := parseBool(v)
		if !ok {
			return errorf("%s: [%s] is not a boolean (yes/no, on/off, true/false, 1/0)", prop.key, v)
		}
		if b {
			return pluginError(fmt.Sprintf("%s:%d: %s", name, n, prop.key))
		}
		return nil
	}
	if !isComment(after) {
		return errorf("%s: unexpected [%s] after [%s]", prop.key, after, v)
	}
	switch prop.kind {
	case propBool:
		b, ok := parseBool(v)
		if !ok {
			return errorf("%s: [%s] is not a boolean (yes/no, on/off, true/false, 1/0)", prop.key, v)
		}
		if b {
			p.args = append(p.args, "--"+prop.opt)
		}
	case propDigits:
		if _, ok := parseDecimal(v); !ok {
			return errorf("%s: [%s] is not a number", prop.key, v)
		}
		p.args = append(p.args, "--"+prop.opt+"="+v)
	default: // propWord
		p.args = append(p.args, "--"+prop.opt+"="+v)
	}
	return nil
}

// word splits s at its first white space.
func word(s string) (w, rest string) {
	i := 0
	for i < len(s) && !isSpace(s[i]) {
		i++
	}
	return s[:i], trimSpace(s[i:])
}

// quotedWord returns the leading "quoted string" of s, or its first word.
func quotedWord(s string) (w, rest string, err error) {
	if s[0] != '"' {
		w, rest = word(s)
		return w, rest, nil
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", "", fmt.Errorf("missing closing quote")
	}
	w = trimSpace(s[1 : 1+end])
	if w == "" {
		return "", "", fmt.Errorf("empty value")
	}
	return w, trimSpace(s[2+end:]), nil
}

func isComment(s string) bool { return s == "" || s[0] == '#' }

// unwrapPathError drops the path an *os.PathError repeats.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
