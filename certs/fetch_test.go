package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"golang.org/x/net/proxy"
)

const testProvider = "2.dnscrypt-cert.example.test"

type exchangerFunc func(ctx context.Context, m *dns.Msg, addr string) (*dns.Msg, time.Duration, error)

func (f exchangerFunc) ExchangeContext(ctx context.Context, m *dns.Msg, addr string) (*dns.Msg, time.Duration, error) {
	return f(ctx, m, addr)
}

// rawTXT returns the TXT record of owner whose record data holds strs as
// character-strings, decoded by miekg/dns from those wire bytes.
func rawTXT(tb testing.TB, owner string, class uint16, strs ...[]byte) dns.RR {
	tb.Helper()
	var rdata []byte
	for _, s := range strs {
		if len(s) > 255 {
			tb.Fatalf("character-string of %d bytes", len(s))
		}
		rdata = append(append(rdata, byte(len(s))), s...)
	}
	h := dns.RR_Header{Name: dns.Fqdn(owner), Rrtype: dns.TypeTXT, Class: class, Ttl: 3600, Rdlength: uint16(len(rdata))}
	rr, _, err := dns.UnpackRRWithHeader(h, rdata, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return rr
}

// split cuts b after each of the given lengths; the rest is the last piece.
func split(b []byte, lens ...int) [][]byte {
	var out [][]byte
	for _, n := range lens {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// wireReply answers q with rrs after a trip through the wire format, as a
// real client would see it.
func wireReply(tb testing.TB, q *dns.Msg, edit func(*dns.Msg), rrs ...dns.RR) *dns.Msg {
	tb.Helper()
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = rrs
	if edit != nil {
		edit(r)
	}
	wire, err := r.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	out := new(dns.Msg)
	if err := out.Unpack(wire); err != nil {
		tb.Fatal(err)
	}
	return out
}

// nastyCert is a valid certificate whose bytes need escaping in TXT
// presentation form: quotes, backslashes, NUL, 0xff, semicolons, spaces
// and digits after a backslash.
func nastyCert(tb testing.TB, serial uint32, extensions []byte) []byte {
	tm := testTemplate(serial, dnscrypt.XChaCha20Poly1305)
	copy(tm.ResolverPK[:], "\"\\\x00\xff; \t()$@.\\123\\\"x\"\"\\\\\x7f\x80\n\r;;  \\0")
	tm.ClientMagic = [8]byte{';', '"', '\\', ' ', 0, 0xff, '1', '\\'}
	tm.Extensions = extensions
	return mustCreate(tb, tm)
}

func TestFetch(t *testing.T) {
	nasty := nastyCert(t, 4, nil)
	long := nastyCert(t, 5, bytes.Repeat([]byte("\"\\\x00;"), 75)) // 424 bytes: needs two strings
	s1 := mustCreate(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	s2 := mustCreate(t, testTemplate(2, dnscrypt.XChaCha20Poly1305))
	s9 := mustCreate(t, testTemplate(9, dnscrypt.XSalsa20Poly1305))
	in := uint16(dns.ClassINET)
	a := &dns.A{Hdr: dns.RR_Header{Name: testProvider + ".", Rrtype: dns.TypeA, Class: in, Ttl: 1}, A: net.IPv4(192, 0, 2, 1)}
	cname := &dns.CNAME{Hdr: dns.RR_Header{Name: testProvider + ".", Rrtype: dns.TypeCNAME, Class: in, Ttl: 1}, Target: "x.example."}

	tests := []struct {
		name     string
		provider string
		rrs      func(tb testing.TB) []dns.RR
		want     [][]byte // certificates, best first
	}{
		{"one record", testProvider, func(tb testing.TB) []dns.RR {
			return []dns.RR{rawTXT(tb, testProvider, in, s1)}
		}, [][]byte{s1}},
		{"escapes", testProvider, func(tb testing.TB) []dns.RR {
			return []dns.RR{rawTXT(tb, testProvider, in, nasty)}
		}, [][]byte{nasty}},
		{"split in several strings", testProvider, func(tb testing.TB) []dns.RR {
			return []dns.RR{rawTXT(tb, testProvider, in, split(nasty, 1, 2, 60, 1)...)}
		}, [][]byte{nasty}},
		{"split with empty strings", testProvider, func(tb testing.TB) []dns.RR {
			return []dns.RR{rawTXT(tb, testProvider, in, split(s2, 0, 72, 0)...)}
		}, [][]byte{s2}},
		{"longer than one string", testProvider, func(tb testing.TB) []dns.RR {
			return []dns.RR{rawTXT(tb, testProvider, in, split(long, 255)...)}
		}, [][]byte{long}},
		{"several records, best first", testProvider, func(tb testing.TB) []dns.RR {
			return []dns.RR{rawTXT(tb, testProvider, in, s1), rawTXT(tb, testProvider, in, split(long, 200)...),
				rawTXT(tb, testProvider, in, s2), rawTXT(tb, testProvider, in, nasty)}
		}, [][]byte{long, nasty, s2, s1}},
		{"other owner, class and types ignored", testProvider, func(tb testing.TB) []dns.RR {
			return []dns.RR{rawTXT(tb, "1."+testProvider, in, s9), a, cname, rawTXT(tb, testProvider, dns.ClassCHAOS, s9),
				rawTXT(tb, testProvider, in, s1), rawTXT(tb, "example.test", in, s9)}
		}, [][]byte{s1}},
		{"owner case-insensitive", "2.DNSCrypt-Cert.Example.TEST.", func(tb testing.TB) []dns.RR {
			return []dns.RR{rawTXT(tb, strings.ToUpper(testProvider), in, s1)}
		}, [][]byte{s1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			ex := exchangerFunc(func(ctx context.Context, q *dns.Msg, addr string) (*dns.Msg, time.Duration, error) {
				calls++
				if addr != "192.0.2.53:8443" {
					t.Errorf("addr %q, want it unchanged", addr)
				}
				checkCertQuery(t, q, dns.Fqdn(tc.provider))
				return wireReply(t, q, nil, tc.rrs(t)...), time.Millisecond, nil
			})
			cs, err := Fetch(context.Background(), ex, "192.0.2.53:8443", tc.provider, testPK, testNow, false)
			if err != nil {
				t.Fatal(err)
			}
			if calls != 1 {
				t.Errorf("%d exchanges, want 1", calls)
			}
			if len(cs) != len(tc.want) {
				t.Fatalf("got %d certificates, want %d", len(cs), len(tc.want))
			}
			for i, c := range cs {
				if !bytes.Equal(c.Raw, tc.want[i]) {
					t.Errorf("cert %d: got %x, want %x", i, c.Raw, tc.want[i])
				}
			}
		})
	}
}

// checkCertQuery checks the shape of a certificate query.
func checkCertQuery(tb testing.TB, q *dns.Msg, name string) {
	tb.Helper()
	if len(q.Question) != 1 || q.Question[0] != (dns.Question{Name: name, Qtype: dns.TypeTXT, Qclass: dns.ClassINET}) {
		tb.Errorf("question %v, want %s TXT IN", q.Question, name)
	}
	if q.Response || q.Opcode != dns.OpcodeQuery || len(q.Answer)+len(q.Ns) != 0 {
		tb.Errorf("not a plain query: %v", q)
	}
	if opt := q.IsEdns0(); opt == nil || opt.UDPSize() != 1252 {
		tb.Errorf("OPT %v, want payload size 1252", opt)
	}
}

func TestFetchErrors(t *testing.T) {
	good := mustCreate(t, testTemplate(1, dnscrypt.XSalsa20Poly1305))
	errNet := errors.New("network is down")
	txt := func(tb testing.TB) []dns.RR { return []dns.RR{rawTXT(tb, testProvider, dns.ClassINET, good)} }
	tests := []struct {
		name    string
		reply   func(tb testing.TB, q *dns.Msg) (*dns.Msg, error)
		want    error
		wantMsg string
	}{
		{"exchange fails", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return nil, errNet
		}, errNet, "fetching certificates from 192.0.2.53:443: network is down"},
		{"nil answer", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return nil, nil
		}, ErrBadResponse, "no message"},
		{"SERVFAIL", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Rcode = dns.RcodeServerFailure }, txt(tb)...), nil
		}, ErrBadResponse, "rcode SERVFAIL"},
		{"NXDOMAIN", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Rcode = dns.RcodeNameError }), nil
		}, ErrBadResponse, "rcode NXDOMAIN"},
		{"REFUSED", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Rcode = dns.RcodeRefused }), nil
		}, ErrBadResponse, "rcode REFUSED"},
		{"other question name", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Question[0].Name = "1.dnscrypt-cert.example.test." }, txt(tb)...), nil
		}, ErrBadResponse, "question not echoed"},
		{"other question type", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Question[0].Qtype = dns.TypeA }, txt(tb)...), nil
		}, ErrBadResponse, "question not echoed"},
		{"other question class", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Question[0].Qclass = dns.ClassCHAOS }, txt(tb)...), nil
		}, ErrBadResponse, "question not echoed"},
		{"no question", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Question = nil }, txt(tb)...), nil
		}, ErrBadResponse, "question not echoed"},
		{"two questions", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Question = append(r.Question, r.Question[0]) }, txt(tb)...), nil
		}, ErrBadResponse, "question not echoed"},
		{"not a response", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Response = false }, txt(tb)...), nil
		}, ErrBadResponse, "not a response"},
		{"other ID", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Id++ }, txt(tb)...), nil
		}, ErrBadResponse, "id "},
		{"no records", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, nil), nil
		}, ErrNoValidCert, "no TXT record for " + testProvider + "."},
		{"truncated, no records", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, func(r *dns.Msg) { r.Truncated = true }), nil
		}, ErrNoValidCert, "in a truncated answer"},
		{"only another owner", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			return wireReply(tb, q, nil, rawTXT(tb, "evil.test", dns.ClassINET, good)), nil
		}, ErrNoValidCert, "no TXT record"},
		{"only invalid certificates", func(tb testing.TB, q *dns.Msg) (*dns.Msg, error) {
			bad := bytes.Clone(good)
			bad[80] ^= 1
			return wireReply(tb, q, nil, rawTXT(tb, testProvider, dns.ClassINET, bad),
				rawTXT(tb, testProvider, dns.ClassINET, []byte("hello"))), nil
		}, ErrSignature, "record 0: certs: signature mismatch\nrecord 1: certs: malformed certificate: too short (5 bytes)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex := exchangerFunc(func(ctx context.Context, q *dns.Msg, addr string) (*dns.Msg, time.Duration, error) {
				r, err := tc.reply(t, q)
				return r, 0, err
			})
			cs, err := Fetch(context.Background(), ex, "192.0.2.53:443", testProvider, testPK, testNow, false)
			if cs != nil || !errors.Is(err, tc.want) {
				t.Fatalf("got %v, %v; want %v", cs, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("got %q, want it to contain %q", err, tc.wantMsg)
			}
		})
	}
}

func TestFetchBadArguments(t *testing.T) {
	ex := exchangerFunc(func(context.Context, *dns.Msg, string) (*dns.Msg, time.Duration, error) {
		t.Errorf("exchange with bad arguments")
		return nil, 0, errors.New("no")
	})
	for _, name := range []string{"", ".", "a..b", strings.Repeat("a", 64) + ".test", "x y.test\x00", "2.x.ex\\046ample"} {
		if _, err := Fetch(context.Background(), ex, "192.0.2.1:443", name, testPK, testNow, false); !errors.Is(err, dnscrypt.ErrProviderName) {
			t.Errorf("provider %q: got %v, want dnscrypt.ErrProviderName", name, err)
		}
	}
	if _, err := Fetch(context.Background(), ex, "192.0.2.1:443", testProvider, testPK[:16], testNow, false); !errors.Is(err, ErrProviderKey) {
		t.Errorf("short key: got %v, want ErrProviderKey", err)
	}
}

func TestFetchIgnoreNotBefore(t *testing.T) {
	tm := testTemplate(3, dnscrypt.XSalsa20Poly1305)
	tm.NotBefore = testNow.Add(time.Hour) // the resolver's clock is ahead
	future := mustCreate(t, tm)
	ex := exchangerFunc(func(_ context.Context, q *dns.Msg, _ string) (*dns.Msg, time.Duration, error) {
		return wireReply(t, q, nil, rawTXT(t, testProvider, dns.ClassINET, future)), 0, nil
	})
	if _, err := Fetch(context.Background(), ex, "192.0.2.1:443", testProvider, testPK, testNow, false); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("got %v, want ErrNotYetValid", err)
	}
	cs, err := Fetch(context.Background(), ex, "192.0.2.1:443", testProvider, testPK, testNow, true)
	if err != nil || len(cs) != 1 || cs[0].Serial != 3 {
		t.Errorf("ignoreNotBefore: got %v, %v", cs, err)
	}
}

// timeoutError is what a net.Conn read past its deadline returns.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestUDPWithTCPFallback(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion(testProvider+".", dns.TypeTXT)
	full := wireReply(t, q, nil, rawTXT(t, testProvider, dns.ClassINET, []byte("full")))
	truncated := wireReply(t, q, func(r *dns.Msg) { r.Truncated = true })
	errTCP := errors.New("tcp refused")
	type result struct {
		r   *dns.Msg
		err error
	}
	tests := []struct {
		name      string
		udp, tcp  result
		cancel    bool // cancel ctx during the UDP exchange
		wantTCP   bool
		want      *dns.Msg
		wantErr   error
		wantInErr string
	}{
		{"udp answers", result{full, nil}, result{nil, errTCP}, false, false, full, nil, ""},
		{"truncated: tcp", result{truncated, nil}, result{full, nil}, false, true, full, nil, ""},
		{"udp timeout: tcp", result{nil, timeoutError{}}, result{full, nil}, false, true, full, nil, ""},
		{"udp refused: tcp", result{nil, errors.New("connection refused")}, result{full, nil}, false, true, full, nil, ""},
		{"udp nil answer: tcp", result{nil, nil}, result{full, nil}, false, true, full, nil, ""},
		{"both fail", result{nil, timeoutError{}}, result{nil, errTCP}, false, true, nil, errTCP, "over tcp: tcp refused (after udp: i/o timeout)"},
		{"truncated, tcp fails", result{truncated, nil}, result{nil, errTCP}, false, true, nil, errTCP, "truncated"},
		{"cancelled: no tcp", result{nil, timeoutError{}}, result{full, nil}, true, false, nil, timeoutError{}, "over udp"},
		{"cancelled after a truncated answer: no tcp", result{truncated, nil}, result{full, nil}, true, false, nil, context.Canceled, "over udp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var udpCalls, tcpCalls int
			ex := &UDPWithTCPFallback{
				UDP: exchangerFunc(func(_ context.Context, m *dns.Msg, addr string) (*dns.Msg, time.Duration, error) {
					udpCalls++
					if tc.cancel {
						cancel()
					}
					return tc.udp.r, time.Millisecond, tc.udp.err
				}),
				TCP: exchangerFunc(func(_ context.Context, m *dns.Msg, addr string) (*dns.Msg, time.Duration, error) {
					tcpCalls++
					if m != q || addr != "192.0.2.1:443" {
						t.Errorf("tcp got another query or address")
					}
					return tc.tcp.r, 2 * time.Millisecond, tc.tcp.err
				}),
			}
			r, rtt, err := ex.ExchangeContext(ctx, q, "192.0.2.1:443")
			if udpCalls != 1 || (tcpCalls == 1) != tc.wantTCP || tcpCalls > 1 {
				t.Errorf("udp %d tcp %d calls, want tcp: %v", udpCalls, tcpCalls, tc.wantTCP)
			}
			if r != tc.want {
				t.Errorf("got answer %v, want %v", r, tc.want)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Errorf("got %v", err)
				}
				if want := time.Millisecond * time.Duration(1+2*tcpCalls); rtt != want {
					t.Errorf("rtt %v, want %v", rtt, want)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantInErr) {
				t.Errorf("got %v, want %v containing %q", err, tc.wantErr, tc.wantInErr)
			}
		})
	}
}

// certHandler answers certificate queries with records, one TXT record
// each. With truncateUDP it answers UDP queries with TC=1 and no records.
func certHandler(tb testing.TB, truncateUDP bool, records ...[]byte) dns.HandlerFunc {
	return func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		if truncateUDP && w.LocalAddr().Network() == "udp" {
			r.Truncated = true
		} else {
			for _, rec := range records {
				r.Answer = append(r.Answer, rawTXT(tb, q.Question[0].Name, dns.ClassINET, split(rec, min(len(rec), 255))...))
			}
		}
		w.WriteMsg(r)
	}
}

// startServer serves h on pc and/or ln until the test ends.
func startServer(tb testing.TB, h dns.Handler, pc net.PacketConn, ln net.Listener) {
	tb.Helper()
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		if s.PacketConn == nil && s.Listener == nil {
			continue
		}
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ActivateAndServe()
		}()
		<-started
		tb.Cleanup(func() {
			s.Shutdown()
			<-done
		})
	}
}

// listenBoth returns a TCP listener and a UDP socket on the same port of
// 127.0.0.1.
func listenBoth(tb testing.TB) (net.Listener, net.PacketConn) {
	tb.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			return ln, pc
		}
		ln.Close()
	}
	tb.Fatal("no port free for both UDP and TCP")
	return nil, nil
}

// TestUDPWithTCPFallbackSockets uses the zero value against real sockets.
func TestUDPWithTCPFallbackSockets(t *testing.T) {
	cert := nastyCert(t, 8, nil)
	t.Run("udp", func(t *testing.T) {
		ln, pc := listenBoth(t)
		startServer(t, certHandler(t, false, cert), pc, nil)
		ln.Close() // nothing on TCP
		cs, err := Fetch(context.Background(), &UDPWithTCPFallback{}, pc.LocalAddr().String(), testProvider, testPK, testNow, false)
		if err != nil || len(cs) != 1 || !bytes.Equal(cs[0].Raw, cert) {
			t.Fatalf("got %v, %v", cs, err)
		}
	})
	t.Run("truncated over udp", func(t *testing.T) {
		ln, pc := listenBoth(t)
		startServer(t, certHandler(t, true, cert), pc, ln)
		cs, err := Fetch(context.Background(), &UDPWithTCPFallback{}, ln.Addr().String(), testProvider, testPK, testNow, false)
		if err != nil || len(cs) != 1 || !bytes.Equal(cs[0].Raw, cert) {
			t.Fatalf("got %v, %v", cs, err)
		}
	})
	t.Run("udp silent", func(t *testing.T) {
		ln, pc := listenBoth(t)
		defer pc.Close() // bound, never read: UDP queries time out
		startServer(t, certHandler(t, false, cert), nil, ln)
		ex := &UDPWithTCPFallback{UDP: &dns.Client{Net: "udp", Timeout: 100 * time.Millisecond}}
		start := time.Now()
		cs, err := Fetch(context.Background(), ex, ln.Addr().String(), testProvider, testPK, testNow, false)
		if err != nil || len(cs) != 1 || !bytes.Equal(cs[0].Raw, cert) {
			t.Fatalf("got %v, %v", cs, err)
		}
		if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
			t.Errorf("took %v, want about the UDP timeout", d)
		}
	})
}

// zeroLengthServer answers every TCP query with a zero-length message, as
// dnsdist 1.7.3 does to certificate queries over TCP.
func zeroLengthServer(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			c.Read(buf)
			c.Write([]byte{0, 0})
			c.Close()
		}
	})
	return ln.Addr().String()
}

// silentServer accepts TCP connections, reads and never answers.
func silentServer(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { c.Read(make([]byte, 1<<16)) })
		}
	})
	return ln.Addr().String()
}

// recordingDialer dials directly and records what it was asked.
type recordingDialer struct {
	mu    sync.Mutex
	calls []string
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.calls = append(d.calls, network+" "+addr)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func TestDialExchangerDirect(t *testing.T) {
	cert := nastyCert(t, 8, bytes.Repeat([]byte{'"'}, 200))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, certHandler(t, false, cert), nil, ln)
	d := &recordingDialer{}
	cs, err := Fetch(context.Background(), &DialExchanger{Dialer: d}, ln.Addr().String(), testProvider, testPK, testNow, false)
	if err != nil || len(cs) != 1 || !bytes.Equal(cs[0].Raw, cert) {
		t.Fatalf("got %v, %v", cs, err)
	}
	if want := "tcp " + ln.Addr().String(); len(d.calls) != 1 || d.calls[0] != want {
		t.Errorf("dialer calls %q, want [%q]", d.calls, want)
	}
	direct := proxy.Direct // x/net/proxy's direct dialer is a ContextDialer
	cs, err = Fetch(context.Background(), &DialExchanger{Dialer: direct}, ln.Addr().String(), testProvider, testPK, testNow, false)
	if err != nil || len(cs) != 1 || !bytes.Equal(cs[0].Raw, cert) {
		t.Fatalf("proxy.Direct: got %v, %v", cs, err)
	}
}

func TestDialExchangerErrors(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion(testProvider+".", dns.TypeTXT)
	t.Run("nil dialer", func(t *testing.T) {
		if _, _, err := (&DialExchanger{}).ExchangeContext(context.Background(), q, "127.0.0.1:1"); err == nil {
			t.Errorf("got nil error")
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		_, _, err := (&DialExchanger{Dialer: &recordingDialer{}}).ExchangeContext(context.Background(), q, addr)
		if err == nil || !strings.Contains(err.Error(), "dialing "+addr) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("zero-length answer", func(t *testing.T) {
		_, _, err := (&DialExchanger{Dialer: &recordingDialer{}}).ExchangeContext(context.Background(), q, zeroLengthServer(t))
		if err == nil {
			t.Errorf("got nil error")
		}
	})
	addr := silentServer(t)
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
		want    error
	}{
		{"ctx deadline", 0, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 150*time.Millisecond)
		}, context.DeadlineExceeded},
		{"Timeout", 150 * time.Millisecond, func() (context.Context, context.CancelFunc) {
			return context.Background(), func() {}
		}, context.DeadlineExceeded},
		{"cancel", 0, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(150*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, _, err := (&DialExchanger{Dialer: &recordingDialer{}, Timeout: tc.timeout}).ExchangeContext(ctx, q, addr)
			if d := time.Since(start); d < 140*time.Millisecond || d > 2*time.Second {
				t.Errorf("returned after %v, want about 150ms", d)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := checkGoroutines(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
