package labtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jedisct1/go-dnsstamps"
	"github.com/miekg/dns"
)

// errPin is the error of pinnedTLS's check.
var errPin = errors.New("certificate does not match the pin")

// pinnedTLS returns a client configuration that accepts exactly the
// certificate whose TBS part hashes to tbsHex (the hash a DNS stamp
// carries), without a CA chain or a name check, as a stamp client does.
func pinnedTLS(tbsHex string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errPin
			}
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if sum := sha256.Sum256(c.RawTBSCertificate); hex.EncodeToString(sum[:]) != tbsHex {
				return fmt.Errorf("%w: TBS hash %x, pin %s", errPin, sum, tbsHex)
			}
			return nil
		},
	}
}

// caTLS returns a client configuration that trusts the certificate in the
// PEM file certFile as a CA and checks the server's name.
func caTLS(t *testing.T, certFile, name string) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", certFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: name}
}

// readCert parses the PEM file of a lab certificate.
func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

// question returns a query for name and type with an EDNS size (0: no OPT)
// and a fresh ID.
func question(name string, qtype uint16, ednsSize uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if ednsSize > 0 {
		m.SetEdns0(ednsSize, false)
	}
	return m
}

// dotExchange writes every query on one TLS connection to addr before it
// reads any answer (pipelining, RFC 7766), and returns the answers in query
// order, matched by ID.
func dotExchange(addr string, cfg *tls.Config, qs ...*dns.Msg) ([]*dns.Msg, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	co := &dns.Conn{Conn: c}
	byID := map[uint16]int{}
	for i, q := range qs {
		q.Id = uint16(i + 1)
		byID[q.Id] = i
		if err := co.WriteMsg(q); err != nil {
			return nil, err
		}
	}
	out := make([]*dns.Msg, len(qs))
	for range qs {
		r, err := co.ReadMsg()
		if err != nil {
			return nil, err
		}
		i, ok := byID[r.Id]
		if !ok || out[i] != nil {
			return nil, fmt.Errorf("answer with unexpected ID %d", r.Id)
		}
		out[i] = r
	}
	return out, nil
}

// dohClient returns an HTTP client that sends every request to addr over
// TLS with cfg, HTTP/2 if h2 (else HTTP/1.1).
func dohClient(addr string, cfg *tls.Config, h2 bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:   cfg,
			ForceAttemptHTTP2: h2,
		},
	}
}

// dohExchange sends q to url as an RFC 8484 POST, or GET with get, and
// returns the answer and the HTTP protocol version used.
func dohExchange(c *http.Client, url string, q *dns.Msg, get bool) (*dns.Msg, string, error) {
	q.Id = 0 // RFC 8484 4.1: 0 for caching
	b, err := q.Pack()
	if err != nil {
		return nil, "", err
	}
	var req *http.Request
	if get {
		req, err = http.NewRequest(http.MethodGet, url+"?dns="+base64.RawURLEncoding.EncodeToString(b), nil)
	} else {
		req, err = http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
		if req != nil {
			req.Header.Set("Content-Type", "application/dns-message")
		}
	}
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", "application/dns-message")
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp.Proto, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/dns-message" {
		return nil, resp.Proto, fmt.Errorf("HTTP %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	r := new(dns.Msg)
	if err := r.Unpack(body); err != nil {
		return nil, resp.Proto, fmt.Errorf("%d-byte answer: %w", len(body), err)
	}
	return r, resp.Proto, nil
}

// tlsServer is one of the lab's two TLS-serving DNS servers, as the Lab
// fields describe it.
type tlsServer struct {
	name                     string
	dot, dohAddr, dohURL     string
	tlsName, cert, tbs       string
	stampDoT, stampDoH       string
	http1                    bool // takes HTTP/1.1 DoH (dnsdist); unbound speaks HTTP/2 only
	otherTBS, otherTLSName   string
	otherCert                string
	stampPlain, plainAddress string
}

func tlsServers(l *Lab) []tlsServer {
	return []tlsServer{
		{"dnsdist", l.DoT, l.DoHAddr, l.DoHURL, l.TLSName, l.TLSCert, l.TLSTBSHash, l.StampDoT, l.StampDoH, true,
			l.BackendTLSTBSHash, l.BackendTLSName, l.BackendTLSCert, l.StampPlain, l.Plain},
		{"unbound", l.BackendDoT, l.BackendDoHAddr, l.BackendDoHURL, l.BackendTLSName, l.BackendTLSCert, l.BackendTLSTBSHash,
			l.StampBackendDoT, l.StampBackendDoH, false, l.TLSTBSHash, l.TLSName, l.TLSCert, l.StampBackend, l.Backend},
	}
}

// TestTLS checks the DoT and DoH listeners of dnsdist and unbound: their
// certificates, pins and stamps, whole large answers, pipelining, and the
// plain-DNS stamps.
func TestTLS(t *testing.T) {
	t.Parallel()
	lab := StartTB(t, Options{NoGoServer: true})

	for _, s := range tlsServers(lab) {
		t.Run(s.name, func(t *testing.T) {
			t.Run("certificate", func(t *testing.T) {
				c := readCert(t, s.cert)
				sum := sha256.Sum256(c.RawTBSCertificate)
				if got := hex.EncodeToString(sum[:]); got != s.tbs {
					t.Errorf("SHA-256 of the TBS part: got %s, want the pin %s", got, s.tbs)
				}
				k, ok := c.PublicKey.(*ecdsa.PublicKey)
				if !ok || k.Curve != elliptic.P256() {
					t.Errorf("key: got %T, want ECDSA P-256", c.PublicKey)
				}
				if len(c.DNSNames) != 1 || c.DNSNames[0] != s.tlsName || c.Subject.CommonName != s.tlsName {
					t.Errorf("names: got CN %q, SAN %v; want %s", c.Subject.CommonName, c.DNSNames, s.tlsName)
				}
				if err := c.CheckSignatureFrom(c); err != nil {
					t.Errorf("not self-signed: %v", err)
				}
				if now := time.Now(); now.Before(c.NotBefore) || now.Add(24*time.Hour).After(c.NotAfter) {
					t.Errorf("validity %v .. %v does not cover the next day", c.NotBefore, c.NotAfter)
				}
				if s.tbs == s.otherTBS {
					t.Errorf("dnsdist and unbound share a certificate (%s)", s.tbs)
				}
			})

			t.Run("stamps", func(t *testing.T) {
				_, dotPort, _ := net.SplitHostPort(s.dot)
				_, dohPort, _ := net.SplitHostPort(s.dohAddr)
				for _, tc := range []struct {
					stamp, addr, host, path string
					proto                   dnsstamps.StampProtoType
				}{
					{s.stampDoT, "127.0.0.1:853", s.tlsName + ":" + dotPort, "", dnsstamps.StampProtoTypeTLS},
					{s.stampDoH, "127.0.0.1:443", s.tlsName + ":" + dohPort, "/dns-query", dnsstamps.StampProtoTypeDoH},
				} {
					st, err := dnsstamps.NewServerStampFromString(tc.stamp)
					if err != nil {
						t.Errorf("%s: %v", tc.stamp, err)
						continue
					}
					if st.Proto != tc.proto || st.ServerAddrStr != tc.addr || st.ProviderName != tc.host || st.Path != tc.path ||
						st.Props != 7 || len(st.Hashes) != 1 || hex.EncodeToString(st.Hashes[0]) != s.tbs {
						t.Errorf("%s: got %v addr %q host %q path %q props %d hashes %x; want %v %q %q %q 7 [%s]",
							tc.stamp, st.Proto, st.ServerAddrStr, st.ProviderName, st.Path, st.Props, st.Hashes,
							tc.proto, tc.addr, tc.host, tc.path, s.tbs)
					}
				}
				if got := "https://" + s.tlsName + ":" + dohPort + "/dns-query"; s.dohURL != got {
					t.Errorf("DoH URL: got %q, want %q", s.dohURL, got)
				}
				st, err := dnsstamps.NewServerStampFromString(s.stampPlain)
				if err != nil || st.Proto != dnsstamps.StampProtoTypePlain || st.ServerAddrStr != s.plainAddress || st.Props != 7 {
					t.Errorf("plain stamp %s: got %v %q props %d, %v; want plain %s 7", s.stampPlain, st.Proto, st.ServerAddrStr, st.Props, err, s.plainAddress)
				}
				if got := firstA(query(t, "tcp", st.ServerAddrStr, "www.lab.test", dns.TypeA, false)); got != "127.0.84.10" {
					t.Errorf("www.lab.test A over TCP to the plain stamp's %s: got %q", st.ServerAddrStr, got)
				}
			})

			t.Run("DoT", func(t *testing.T) {
				for _, c := range []struct {
					name string
					cfg  *tls.Config
				}{{"pin", pinnedTLS(s.tbs)}, {"CA and name", caTLS(t, s.cert, s.tlsName)}} {
					// Pipelined on one connection: www, the 13.4 KB huge
					// (whole: no TC over TCP), NXDOMAIN, and 17 more.
					qs := []*dns.Msg{
						question("www.lab.test", dns.TypeA, 0),
						question("huge.lab.test", dns.TypeTXT, 65535),
						question("nope.lab.test", dns.TypeA, 1232),
					}
					for i := range 17 {
						qs = append(qs, question("x"+strconv.Itoa(i)+".wild.lab.test", dns.TypeA, 0))
					}
					rs, err := dotExchange(s.dot, c.cfg, qs...)
					if err != nil {
						t.Fatalf("%s: %v", c.name, err)
					}
					if got := firstA(rs[0]); got != "127.0.84.10" {
						t.Errorf("%s: www.lab.test A: got %q", c.name, got)
					}
					if r := rs[1]; r.Truncated || len(r.Answer) != 50 {
						t.Errorf("%s: huge.lab.test TXT: got TC=%v, %d records; want 50, no TC", c.name, r.Truncated, len(r.Answer))
					}
					if rs[2].Rcode != dns.RcodeNameError {
						t.Errorf("%s: nope.lab.test: got %s, want NXDOMAIN", c.name, dns.RcodeToString[rs[2].Rcode])
					}
					for i, r := range rs[3:] {
						if got := firstA(r); got != "127.0.84.50" || r.Question[0].Name != qs[i+3].Question[0].Name {
							t.Errorf("%s: %s: got %q for %v", c.name, qs[i+3].Question[0].Name, got, r.Question)
						}
					}
				}
				// The other server's pin, CA or name must fail the handshake:
				// the checks above can fail.
				for _, c := range []struct {
					name string
					cfg  *tls.Config
				}{
					{"other pin", pinnedTLS(s.otherTBS)},
					{"other CA", caTLS(t, s.otherCert, s.tlsName)},
					{"other name", caTLS(t, s.cert, s.otherTLSName)},
				} {
					if _, err := dotExchange(s.dot, c.cfg, question("www.lab.test", dns.TypeA, 0)); err == nil {
						t.Errorf("%s: got an answer, want a failed handshake", c.name)
					}
				}
			})

			t.Run("DoH", func(t *testing.T) {
				protos := []bool{true}
				if s.http1 {
					protos = append(protos, false)
				}
				for _, h2 := range protos {
					for _, get := range []bool{false, true} {
						c := dohClient(s.dohAddr, pinnedTLS(s.tbs), h2)
						name := fmt.Sprintf("h2=%v get=%v", h2, get)
						r, proto, err := dohExchange(c, s.dohURL, question("www.lab.test", dns.TypeA, 0), get)
						if err != nil {
							t.Fatalf("%s: www.lab.test A: %v", name, err)
						}
						if want := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]; proto != want {
							t.Errorf("%s: protocol %s, want %s", name, proto, want)
						}
						if got := firstA(r); got != "127.0.84.10" {
							t.Errorf("%s: www.lab.test A: got %q", name, got)
						}
						// dnsdist 1.7 would cut a UDP answer over 4 KB from
						// the backend; the lab sends its DoH over TCP.
						for _, size := range []uint16{0, 1232, 65535} {
							r, _, err := dohExchange(c, s.dohURL, question("huge.lab.test", dns.TypeTXT, size), get)
							if err != nil || r.Truncated || len(r.Answer) != 50 {
								t.Errorf("%s: huge.lab.test TXT, EDNS %d: got %v, want 50 records", name, size, err)
								if r != nil {
									t.Errorf("TC=%v, %d records", r.Truncated, len(r.Answer))
								}
							}
						}
						c.CloseIdleConnections()
					}
				}
				if !s.http1 {
					c := dohClient(s.dohAddr, pinnedTLS(s.tbs), false)
					if _, proto, err := dohExchange(c, s.dohURL, question("www.lab.test", dns.TypeA, 0), false); err == nil {
						t.Errorf("HTTP/1.1: got an answer (%s), want an error: unbound's DoH is HTTP/2 only", proto)
					}
				}
				c := dohClient(s.dohAddr, pinnedTLS(s.otherTBS), true)
				if _, _, err := dohExchange(c, s.dohURL, question("www.lab.test", dns.TypeA, 0), false); !errors.Is(err, errPin) {
					t.Errorf("the other server's pin: got %v, want %v", err, errPin)
				}
			})
		})
	}

	t.Run("stubby", func(t *testing.T) {
		for _, up := range []string{"", StubbyToBackend} {
			s := StartStubbyTB(t, lab, up)
			want := map[string]string{"": lab.DoT, StubbyToBackend: lab.BackendDoT}[up]
			if s.Upstream != want {
				t.Errorf("upstream %q: Upstream %s, want %s", up, s.Upstream, want)
			}
			b, err := os.ReadFile(s.Config)
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(want)
			if cfg := string(b); !strings.Contains(cfg, "tls_port: "+port) || !strings.Contains(cfg, "127.0.0.1@") ||
				!strings.Contains(cfg, "GETDNS_AUTHENTICATION_REQUIRED") {
				t.Errorf("stubby.yml does not pin, listen on loopback or forward to %s:\n%s", want, cfg)
			}
			// dig, a real client, through stubby; then the 13.4 KB
			// answer whole over TCP.
			out, err := exec.Command("dig", "+short", "+time=5", "+tries=1", "-p", portOf(t, s.Addr), "@127.0.0.1", "www.lab.test", "A").Output()
			if err != nil || strings.TrimSpace(string(out)) != "127.0.84.10" {
				t.Errorf("dig through stubby %s: got %q, %v; want 127.0.84.10", s.Addr, out, err)
			}
			r := query(t, "tcp", s.Addr, "huge.lab.test", dns.TypeTXT, true)
			if r.Truncated || len(r.Answer) < 50 {
				t.Errorf("huge.lab.test through stubby over TCP: TC=%v, %d records; want 50 and no TC", r.Truncated, len(r.Answer))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := tryQuery("udp", s.Addr, "www.lab.test", dns.TypeA, false); err == nil {
				t.Errorf("stubby on %s still answers after Close", s.Addr)
			}
		}
		if _, err := lab.StartStubby("nosuch"); err == nil {
			t.Errorf("StartStubby(nosuch): got no error")
		}
	})
}

// portOf returns the port of a "host:port" address.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
