// Package loadgen sends DNS queries to a server at a fixed rate, whatever
// the answers' delays (open loop: a slow answer does not hold the next
// query back, so a stall shows in the latencies instead of lowering the
// rate), and records each query's send time, answer time and rcode.
//
//	res := loadgen.Run(ctx, loadgen.Config{Addr: "127.0.0.1:5353", Rate: 200, Duration: 10 * time.Second})
//	fmt.Println(res.Summary(0, res.Span()))
//
// The end-to-end tests of a set of resolvers (tests/set_e2e_test.go) and
// the tests/bench/setload tool use it.
package loadgen

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Config of a run. Zero values take defaults.
type Config struct {
	Addr     string        // the server, UDP
	Rate     float64       // queries per second; 0: 100
	Duration time.Duration // how long to send; 0: 5 s
	// Timeout is how long a query waits for its answer: longer than the
	// server's own deadline, so that a query without an answer was
	// dropped, not merely late. 0: 15 s.
	Timeout time.Duration
	// Name is the name of query i, asked for its A records; nil:
	// "s<i>.wild.lab.test." (the lab's zone has a wildcard there, and
	// the dnscrypttest Zone answers any name).
	Name func(i int) string
}

// NoAnswer is the Rcode of a query that got no answer within the timeout.
const NoAnswer = -1

// Record is the outcome of one query.
type Record struct {
	Sent  time.Duration // since the start of the run
	Took  time.Duration // until the answer (the timeout without one)
	Rcode int           // NoAnswer if none came
	// Answers is how many records the answer section had.
	Answers int
}

// Result is a run's records, in the order the queries were sent.
type Result struct {
	Start   time.Time
	Records []Record
}

// Run sends queries as cfg says until cfg.Duration has passed or ctx is
// done, then waits for the outstanding ones (at most cfg.Timeout).
func Run(ctx context.Context, cfg Config) *Result {
	rate := cfg.Rate
	if rate <= 0 {
		rate = 100
	}
	dur := cfg.Duration
	if dur <= 0 {
		dur = 5 * time.Second
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	name := cfg.Name
	if name == nil {
		name = func(i int) string { return fmt.Sprintf("s%d.wild.lab.test.", i) }
	}
	n := int(rate * dur.Seconds())
	res := &Result{Start: time.Now(), Records: make([]Record, 0, n)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < n; i++ {
		// Pacing, not synchronisation: query i leaves at its own time.
		if d := time.Until(res.Start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		mu.Lock()
		res.Records = append(res.Records, Record{Sent: time.Since(res.Start), Rcode: NoAnswer})
		slot := len(res.Records) - 1
		mu.Unlock()
		wg.Go(func() {
			m := new(dns.Msg)
			m.SetQuestion(name(i), dns.TypeA)
			c := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 4096}
			start := time.Now()
			r, _, err := c.Exchange(m, cfg.Addr)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			rec := &res.Records[slot]
			rec.Took = took
			if err == nil {
				rec.Rcode, rec.Answers = r.Rcode, len(r.Answer)
			}
		})
	}
	wg.Wait()
	return res
}

// Span is the time from the start to the last query sent.
func (r *Result) Span() time.Duration {
	if len(r.Records) == 0 {
		return 0
	}
	return r.Records[len(r.Records)-1].Sent
}

// Summary describes the queries sent from from to to (since the start).
type Summary struct {
	Sent, Answered, Lost int
	Rcodes               map[string]int // by name, e.g. "NOERROR", "SERVFAIL"
	// P50, P99 and Max are over the answered queries.
	P50, P99, Max time.Duration
}

// Summary returns the summary of the queries sent in [from, to].
func (r *Result) Summary(from, to time.Duration) Summary {
	s := Summary{Rcodes: map[string]int{}}
	var took []time.Duration
	for _, rec := range r.Records {
		if rec.Sent < from || rec.Sent > to {
			continue
		}
		s.Sent++
		if rec.Rcode == NoAnswer {
			s.Lost++
			continue
		}
		s.Answered++
		s.Rcodes[dns.RcodeToString[rec.Rcode]]++
		took = append(took, rec.Took)
	}
	if len(took) > 0 {
		slices.Sort(took)
		s.P50, s.P99, s.Max = took[len(took)/2], took[len(took)*99/100], took[len(took)-1]
	}
	return s
}

// Servfail is how many answers were SERVFAIL.
func (s Summary) Servfail() int { return s.Rcodes["SERVFAIL"] }

// String is one line: sent, lost, rcodes, p50/p99/max.
func (s Summary) String() string {
	var rc []string
	for k, v := range s.Rcodes {
		rc = append(rc, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(rc)
	return fmt.Sprintf("%d sent, %d lost, %s, p50 %v, p99 %v, max %v", s.Sent, s.Lost, strings.Join(rc, ", "),
		round(s.P50), round(s.P99), round(s.Max))
}

func round(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
