// Command torlatency measures DNS query latency through a private Tor
// network on loopback (tests/torlab), for the numbers of the Tor mode:
//
//   - cold queries, each on a new circuit (--isolation=query), and warm
//     queries, on one open circuit (--isolation=none), through the proxy
//     with and without optimistic data (the query sent right after the
//     SOCKS CONNECT request instead of after its reply);
//   - the same exchanges made by a plain DNSCrypt client dialing through
//     golang.org/x/net/proxy's SOCKS5 dialer, as a baseline;
//   - the time from the proxy's start to its first answer in Tor mode.
//
// The resolver is the lab's Go DNSCrypt server behind the exits. It prints
// median and 90th percentile over -n queries per row.
//
// Usage: go run ./tests/bench/torlatency [-n 100]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/proxy"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt/dnscrypttest"
	iproxy "github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/tortest"
)

var n = flag.Int("n", 100, "queries per measurement")

func main() {
	flag.Parse()
	if *n < 1 {
		fmt.Fprintf(os.Stderr, "torlatency: -n %d: at least one query per measurement\n", *n)
		os.Exit(2)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "torlatency:", err)
		os.Exit(1)
	}
}

func run() error {
	lab, err := labtest.Start(labtest.Options{})
	if err != nil {
		return err
	}
	defer lab.Close()
	fmt.Fprintln(os.Stderr, "starting the private Tor network...")
	tor, err := tortest.Start(tortest.Options{})
	if err != nil {
		return err
	}
	defer tor.Close()
	fmt.Printf("Tor network up in %v; resolver %s (Go DNSCrypt server) behind the exits\n\n",
		tor.StartTime.Round(100*time.Millisecond), lab.Go)
	fmt.Printf("%-46s %9s %9s %9s\n", "", "median", "p90", "max")

	for _, iso := range []iproxy.Isolation{iproxy.IsolationQuery, iproxy.IsolationNone} {
		name := map[iproxy.Isolation]string{iproxy.IsolationQuery: "cold (new circuit each)", iproxy.IsolationNone: "warm (one circuit)"}[iso]
		for _, optimistic := range []bool{true, false} {
			d, err := viaProxy(lab, tor, iso, optimistic)
			if err != nil {
				return err
			}
			label := "proxy, " + name + ", optimistic data"
			if !optimistic {
				label = "proxy, " + name + ", CONNECT reply awaited"
			}
			report(label, d)
		}
		d, err := viaXNet(lab, tor, iso == iproxy.IsolationQuery)
		if err != nil {
			return err
		}
		report("x/net/proxy dial, "+name, d)
	}
	var starts []time.Duration
	for range 5 {
		d, err := startToAnswer(lab, tor)
		if err != nil {
			return err
		}
		starts = append(starts, d)
	}
	report("start to first answer (5 starts)", starts)
	return nil
}

func report(label string, d []time.Duration) {
	slices.Sort(d)
	ms := func(x time.Duration) string { return strconv.FormatFloat(float64(x)/1e6, 'f', 1, 64) + " ms" }
	fmt.Printf("%-46s %9s %9s %9s\n", label, ms(d[len(d)/2]), ms(d[len(d)*9/10]), ms(d[len(d)-1]))
}

// startProxy runs the proxy through Tor on a free port. The returned
// function stops it and returns Serve's error.
func startProxy(lab *labtest.Lab, tor *tortest.Network, iso iproxy.Isolation, optimistic bool) (string, func() error, error) {
	p, err := iproxy.New(iproxy.Config{
		ResolverAddr:  lab.Go,
		ProviderName:  lab.ProviderName,
		ProviderKey:   lab.ProviderKey,
		EphemeralKeys: true, // the Tor default
		SOCKS:         &iproxy.SOCKS{Addr: tor.SOCKS, Isolation: iso, OptimisticData: optimistic},
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return "", nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, pc, ln) }()
	stop := func() error {
		cancel()
		if err := <-done; err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		return nil
	}
	return pc.LocalAddr().String(), stop, nil
}

// ask sends one query and returns its latency.
func ask(addr string) (time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion("www.lab.test.", dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 30 * time.Second}
	start := time.Now()
	r, _, err := c.Exchange(m, addr)
	if err == nil && r.Rcode != dns.RcodeSuccess {
		err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	return time.Since(start), err
}

func viaProxy(lab *labtest.Lab, tor *tortest.Network, iso iproxy.Isolation, optimistic bool) (d []time.Duration, err error) {
	addr, stop, err := startProxy(lab, tor, iso, optimistic)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	// Until the certificate has come (SERVFAIL before), and one warm-up.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := ask(addr); err == nil {
			break
		} else if time.Now().After(deadline) {
			return nil, fmt.Errorf("no answer through the proxy: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range *n {
		took, err := ask(addr)
		if err != nil {
			return nil, err
		}
		d = append(d, took)
	}
	return d, nil
}

// viaXNet makes the same exchanges with a plain DNSCrypt client over
// x/net/proxy's SOCKS5 dialer, which waits for the CONNECT reply.
func viaXNet(lab *labtest.Lab, tor *tortest.Network, cold bool) ([]time.Duration, error) {
	dialer := func(user string) proxy.ContextDialer {
		var auth *proxy.Auth
		if user != "" {
			auth = &proxy.Auth{User: user, Password: "x"}
		}
		d, _ := proxy.SOCKS5("tcp", tor.SOCKS, auth, proxy.Direct)
		return d.(proxy.ContextDialer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := dnscrypttest.NewClient(ctx, &certs.DialExchanger{Dialer: dialer("cert")}, lab.Go, lab.ProviderName, lab.ProviderKey)
	if err != nil {
		return nil, err
	}
	c.Dial = dialer("warm").DialContext
	var d []time.Duration
	for i := range *n + 1 {
		if cold {
			c.Dial = dialer("cold-" + strconv.Itoa(i)).DialContext
		}
		m := new(dns.Msg)
		m.SetQuestion("www.lab.test.", dns.TypeA)
		qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		_, err := c.Exchange(qctx, "tcp", m)
		took := time.Since(start)
		qcancel()
		if err != nil {
			return nil, err
		}
		if i > 0 { // the first one warms the circuit up
			d = append(d, took)
		}
	}
	return d, nil
}

// startToAnswer starts a proxy through Tor and waits for its first answer.
func startToAnswer(lab *labtest.Lab, tor *tortest.Network) (_ time.Duration, err error) {
	start := time.Now()
	addr, stop, err := startProxy(lab, tor, iproxy.IsolationEpoch, true)
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	for time.Since(start) < time.Minute {
		if _, err := ask(addr); err == nil {
			return time.Since(start), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("no answer within a minute")
}
