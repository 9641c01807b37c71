package labtest

import (
	"cmp"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Upstreams of [Lab.StartStubby]: the DoT listener stubby forwards to.
const (
	StubbyToDnsdist = "dnsdist" // Lab.DoT
	StubbyToBackend = "backend" // Lab.BackendDoT (unbound)
)

// Stubby is a running stubby (getdns's DNS-over-TLS stub resolver) in front
// of one DoT listener of a [Lab]: plain DNS in on Addr, DNS-over-TLS out,
// the server authenticated strictly by the SPKI pin of its certificate and
// its name. It belongs to the lab, which stops it when it closes.
type Stubby struct {
	Addr     string // "127.0.0.1:PORT", UDP and TCP
	Upstream string // the DoT address it forwards to: Lab.DoT or Lab.BackendDoT
	Config   string // its stubby.yml
	Log      string // its log file (verbosity 6, info)

	lab  *Lab
	port int
	mu   sync.Mutex
	done bool
	err  error
}

// StartStubby starts a stubby on a free loopback port, forwarding to the
// DoT listener upstream ([StubbyToDnsdist] or [StubbyToBackend]; "" means
// dnsdist), with tests/lab/stubby.sh. It returns once a query through it is
// answered. Without the stubby program the error wraps [ErrUnavailable].
func (l *Lab) StartStubby(upstream string) (*Stubby, error) {
	upstream = cmp.Or(upstream, StubbyToDnsdist)
	var dot string
	switch upstream {
	case StubbyToDnsdist:
		dot = l.DoT
	case StubbyToBackend:
		dot = l.BackendDoT
	default:
		return nil, fmt.Errorf("labtest: stubby upstream %q: want %q or %q", upstream, StubbyToDnsdist, StubbyToBackend)
	}
	if _, err := exec.LookPath("stubby"); err != nil {
		return nil, fmt.Errorf("%w: stubby not found (run tests/lab/install.sh)", ErrUnavailable)
	}
	for attempt := 0; ; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			return nil, fmt.Errorf("labtest: picking a port for stubby: %w", err)
		}
		port := strconv.Itoa(ports[0])
		out, err := l.run("stubby.sh", "-s", l.Dir, "start", port, upstream)
		if err == nil {
			name := "stubby-" + port
			return &Stubby{
				Addr:     strings.TrimSpace(out),
				Upstream: dot,
				Config:   filepath.Join(l.Dir, name, "stubby.yml"),
				Log:      filepath.Join(l.Dir, name+".log"),
				lab:      l,
				port:     ports[0],
			}, nil
		}
		if attempt == 1 || !strings.Contains(err.Error(), "already in use") {
			return nil, err
		}
	}
}

// Close stops stubby. It may be called more than once, also after the lab
// closed (which stopped stubby already).
func (s *Stubby) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return s.err
	}
	s.done = true
	if _, err := s.lab.run("stubby.sh", "-s", s.lab.Dir, "stop", strconv.Itoa(s.port)); err != nil && !errors.Is(err, ErrClosed) {
		s.err = err
	}
	return s.err
}

// StartStubbyTB starts a stubby for a test ([Lab.StartStubby]) and stops it
// in tb.Cleanup. A missing stubby skips the test, or fails it under CI=true
// ([Require]).
func StartStubbyTB(tb testing.TB, l *Lab, upstream string) *Stubby {
	tb.Helper()
	s, err := l.StartStubby(upstream)
	if errors.Is(err, ErrUnavailable) {
		Require(tb, "stubby", err)
	}
	if err != nil {
		tb.Fatalf("starting stubby: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("stopping stubby: %v", err)
		}
	})
	return s
}
