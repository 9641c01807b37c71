package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
)

// testAttempts is how many certificate fetches --test makes, as in 1.x.
const testAttempts = 3

// testBackoff is the wait after the n-th failed attempt (1.x: 1 s, 3 s).
func testBackoff(n int) time.Duration { return time.Second + time.Duration(n-1)*2*time.Second }

// testCerts is --test=MARGIN: fetch the certificates (three attempts),
// then exit 0 if the best one stays valid for MARGIN, 4 if it ends
// sooner (or is not valid yet, with -I), 2 if none is valid, 3 if the
// resolver did not answer.
//
// With several resolvers, each DNSCrypt one is tested in turn (the others
// have no certificate: the log says they are not tested; none at all is
// an error, 1), and the status is the worst of theirs: 2 (a resolver
// without a valid certificate), then 3 (one that did not answer), then 4
// (one whose certificate ends within the margin), then 0.
func testCerts(ctx context.Context, plan *Plan, log *slog.Logger) int {
	rs := plan.Proxy.Resolvers
	if len(rs) == 1 {
		return testResolver(ctx, plan, rs[0], log)
	}
	var tested []upstream.Spec
	for _, r := range rs {
		if r.Kind == upstream.KindDNSCrypt {
			tested = append(tested, r)
		} else {
			logf(log, slog.LevelInfo, "Not testing %s: a %v resolver has no DNSCrypt certificate", r.String(), r.Kind)
		}
	}
	if len(tested) == 0 {
		logf(log, slog.LevelError, "--test checks DNSCrypt resolvers' certificates: none of the %d resolvers is one", len(rs))
		return ExitFailure
	}
	worst := ExitOK
	var results []string
	for _, r := range tested {
		logf(log, proxy.LevelNotice, "Testing the certificates of %s", r.String())
		code := testResolver(ctx, plan, r, log)
		if code == ExitFailure { // interrupted, or a configuration error
			return code
		}
		if testSeverity(code) > testSeverity(worst) {
			worst = code
		}
		results = append(results, fmt.Sprintf("%s: %s", r.String(), testResults[code]))
	}
	level := slog.LevelInfo
	if worst != ExitOK {
		level = slog.LevelWarn
	}
	logf(log, level, "Certificates of %d resolvers tested (%s): exit status %d", len(tested), strings.Join(results, "; "), worst)
	return worst
}

// testResults name the outcomes of one resolver's test.
var testResults = map[int]string{
	ExitOK:          "valid",
	ExitNoCert:      "no valid certificate",
	ExitCertTimeout: "no answer",
	ExitCertMargin:  "not valid for the margin",
}

// testSeverity orders the exit statuses of --test, the worst highest.
func testSeverity(code int) int {
	switch code {
	case ExitOK:
		return 0
	case ExitCertMargin:
		return 1
	case ExitCertTimeout:
		return 2
	}
	return 3 // ExitNoCert
}

// testResolver is --test for the resolver r of plan.
func testResolver(ctx context.Context, plan *Plan, r upstream.Spec, log *slog.Logger) int {
	cfg := plan.Proxy
	cfg.Logger = log
	// The resolver alone, not a set: its own certificates.
	cfg.Resolvers, cfg.Operators = []upstream.Spec{r}, nil
	cfg.Selection, cfg.Hedge, cfg.HedgeOther = proxy.SelectAuto, proxy.Off, proxy.Auto
	if r.Kind != upstream.KindDNSCrypt {
		logf(log, slog.LevelError, "--test checks a DNSCrypt resolver's certificate: %s is a %v resolver", r.String(), r.Kind)
		return ExitFailure
	}
	p, err := proxy.New(cfg)
	if err != nil {
		logf(log, slog.LevelError, "%s", invalidConfig(err))
		return ExitFailure
	}
	timeout := p.Config().Timeout
	var cs []*certs.Cert
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		cs, err = p.FetchCerts(actx)
		cancel()
		if err == nil { // FetchCerts returns at least one certificate then
			break
		}
		if ctx.Err() != nil {
			logf(log, slog.LevelError, "Interrupted")
			return ExitFailure
		}
		if errors.Is(err, certs.ErrNoValidCert) {
			logf(log, slog.LevelError, "No useable certificates found")
			logf(log, slog.LevelInfo, "%v", err)
			return ExitNoCert
		}
		logf(log, slog.LevelError, "Unable to retrieve server certificates: %v", err)
		if n == testAttempts {
			return ExitCertTimeout
		}
		select {
		case <-time.After(testBackoff(n)):
		case <-ctx.Done():
			logf(log, slog.LevelError, "Interrupted")
			return ExitFailure
		}
	}
	for _, c := range cs {
		certs.LogReceived(log, slog.LevelInfo, c)
	}
	// The clock the certificates were checked against.
	return checkMargin(cs[0], plan.TestMargin, p.Config().Now(), log)
}

// checkMargin applies 1.x's test on the chosen certificate: now must lie
// within [ts-start, ts-end - margin]. A margin longer than the whole
// validity period is never met (1.x then checked now against
// [ts-start, ts-start] and printed that window).
func checkMargin(c *certs.Cert, margin time.Duration, now time.Time, log *slog.Logger) int {
	begin, end := c.NotBefore.Unix(), c.NotAfter.Unix()
	m := int64(margin / time.Second)
	if end-m < begin {
		logf(log, slog.LevelWarn, "The certificate is not valid for the given safety margin: "+
			"a margin of %d s is wider than the certificate validity period [%d..%d] (%d s)", m, begin, end, end-begin)
		return ExitCertMargin
	}
	if t := now.Unix(); t < begin || t > end-m {
		logf(log, slog.LevelWarn, "The certificate is not valid for the given safety margin (%d-%d not within [%d..%d])",
			t, m, begin, end-m)
		return ExitCertMargin
	}
	certs.LogChosen(log, c)
	return ExitOK
}
