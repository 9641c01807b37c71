package cli

import (
	"errors"
	"fmt"
	"strings"
)

// Exit statuses, as dnscrypt-proxy 1.x used them.
const (
	ExitOK          = 0
	ExitFailure     = 1 // usage, configuration, address, key, bind and privilege errors
	ExitPlugin      = 2 // plugin errors (this proxy has no plugins)
	ExitNoCert      = 2 // --test: no valid certificate
	ExitCertTimeout = 3 // --test: the third fetch attempt failed
	ExitCertMargin  = 4 // --test: the certificate ends within the margin
)

// Errors for callers that branch on the kind of failure. The text shown to
// the user is the one of [ExitError].
var (
	// ErrUsage: an unknown or malformed option, or a bad option value.
	ErrUsage = errors.New("cli: bad command line")
	// ErrConfig: a configuration file that cannot be read or parsed.
	ErrConfig = errors.New("cli: bad configuration file")
	// ErrPlugins: -X/--plugin or a plugin property; plugins are not supported.
	ErrPlugins = errors.New("cli: plugins are not supported")
	// ErrPlatform: an option that exists only on Windows.
	ErrPlatform = errors.New("cli: option not supported on this platform")
)

// errSetup: the options are valid one by one but cannot be used together
// or with this system (unknown user, unreadable file, ...). No caller
// branches on it; the [ExitError] carries the status.
var errSetup = errors.New("cli: cannot set up the proxy")

// ExitError is an error that ends the program with a given status.
type ExitError struct {
	Code int    // the process exit status
	Msg  string // the message for the user (1.x wording where 1.x had one)
	// Hint asks for "Try 'dnscrypt-proxy --help'" after the message.
	Hint bool
	Err  error // the cause; wraps one of the sentinels above
}

func (e *ExitError) Error() string { return e.Msg }

// Unwrap returns the cause.
func (e *ExitError) Unwrap() error { return e.Err }

// usageErrorf reports a malformed command line: exit 1 with a hint.
func usageErrorf(format string, args ...any) *ExitError {
	msg := fmt.Sprintf(format, args...)
	return &ExitError{Code: ExitFailure, Msg: msg, Hint: true, Err: fmt.Errorf("%w: %s", ErrUsage, msg)}
}

// valueErrorf reports a bad option value, in 1.x words: exit 1.
func valueErrorf(format string, args ...any) *ExitError {
	msg := fmt.Sprintf(format, args...)
	return &ExitError{Code: ExitFailure, Msg: msg, Err: fmt.Errorf("%w: %s", ErrUsage, msg)}
}

// setupErrorf reports options that cannot be used: exit 1.
func setupErrorf(format string, args ...any) *ExitError {
	msg := fmt.Sprintf(format, args...)
	return &ExitError{Code: ExitFailure, Msg: msg, Err: fmt.Errorf("%w: %s", errSetup, msg)}
}

// pluginError reports a plugin request.
func pluginError(what string) *ExitError {
	msg := fmt.Sprintf("Plugins are not supported by this dnscrypt-proxy (%s)", what)
	return &ExitError{Code: ExitPlugin, Msg: msg, Err: fmt.Errorf("%w: %s", ErrPlugins, what)}
}

// platformError reports an option or property that exists only on
// Windows.
func platformError(what string) *ExitError {
	msg := what + " is not supported on this platform (Windows only)"
	return &ExitError{Code: ExitFailure, Msg: msg, Err: fmt.Errorf("%w: %s", ErrPlatform, what)}
}

// exitCode returns the exit status for err: its ExitError's code, else 1.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if ee, ok := errors.AsType[*ExitError](err); ok {
		return ee.Code
	}
	return ExitFailure
}

// invalidConfig is the message for a configuration the proxy refuses
// (proxy.Config.Validate, proxy.New): every reason, on one line.
func invalidConfig(err error) string {
	return "Invalid configuration: " + strings.ReplaceAll(userText(err), "\n", "; ")
}
