package cli

import (
	"context"
	"errors"
	"log/slog"
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
func testCerts(ctx context.Context, plan *Plan, log *slog.Logger) int {
	cfg := plan.Proxy
	cfg.Logger = log
	if r := cfg.Resolvers[0]; r.Kind != upstream.KindDNSCrypt {
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
