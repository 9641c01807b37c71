package dnscrypttest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

type client struct{ *dnscrypttest.Client }

func newClient(t *testing.T, srv *dnscrypttest.Server, ex certs.Exchanger) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dnscrypttest.NewClient(ctx, ex, srv.Addr, dnscrypttest.ProviderName, srv.ProviderKey)
	if err != nil {
		t.Fatalf("fetching certificates: %v", err)
	}
	return &client{c}
}

func (c *client) exchange(t *testing.T, network string, q *dns.Msg) (*dns.Msg, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Exchange(ctx, network, q)
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func TestServerAnswers(t *testing.T) {
	for _, c := range []dnscrypt.Construction{dnscrypt.XSalsa20Poly1305, dnscrypt.XChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil, dnscrypttest.CertSpec{Construction: c})
			cl := newClient(t, srv, &dns.Client{Net: "udp"})
			if cl.Cert.Construction != c {
				t.Fatalf("construction: got %v, want %v", cl.Cert.Construction, c)
			}
			for _, network := range []string{"udp", "tcp"} {
				r, err := cl.exchange(t, network, query("www.example.", dns.TypeA))
				if err != nil {
					t.Fatalf("%s: %v", network, err)
				}
				if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
					t.Fatalf("%s: answer %v", network, r.Answer)
				}
				r, err = cl.exchange(t, network, query("nxdomain.example.", dns.TypeA))
				if err != nil || r.Rcode != dns.RcodeNameError {
					t.Fatalf("%s: nx: %v %v", network, r, err)
				}
			}
			// A 3000-byte answer is truncated over UDP, whole over TCP.
			r, err := cl.exchange(t, "udp", query("size-3000.example.", dns.TypeTXT))
			if err != nil || !r.Truncated {
				t.Fatalf("udp big: truncated=%v err=%v", r != nil && r.Truncated, err)
			}
			r, err = cl.exchange(t, "tcp", query("size-3000.example.", dns.TypeTXT))
			if err != nil || r.Truncated || len(r.Answer) != 3 {
				t.Fatalf("tcp big: %v %v", r, err)
			}
			qs := srv.Queries()
			if len(qs) != 6 || qs[0].ClientPK != cl.Key.ClientPublicKey() || qs[5].Transport != "tcp" {
				t.Fatalf("recorded queries: %+v", qs)
			}
		})
	}
}

func TestServerFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    dnscrypttest.Faults
		want error
	}{
		{"wrong nonce", dnscrypttest.Faults{WrongNonce: true}, dnscrypt.ErrNonce},
		{"wrong magic", dnscrypttest.Faults{WrongMagic: true}, dnscrypt.ErrMagic},
		{"bad padding", dnscrypttest.Faults{BadPadding: true}, dnscrypt.ErrPadding},
		{"bad tag", dnscrypttest.Faults{BadTag: true}, dnscrypt.ErrAuth},
		{"garbage", dnscrypttest.Faults{Garbage: true}, nil}, // any error
		{"silent", dnscrypttest.Faults{Silent: true}, nil},
		{"delay", dnscrypttest.Faults{Delay: 2 * time.Second}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnscrypttest.NewServer(t, nil)
			cl := newClient(t, srv, &dns.Client{Net: "udp"})
			srv.SetFaults(tc.f)
			for _, network := range []string{"udp", "tcp"} {
				_, err := cl.exchange(t, network, query("www.example.", dns.TypeA))
				if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
					t.Fatalf("%s: got %v, want %v", network, err, tc.want)
				}
			}
		})
	}
	t.Run("truncate", func(t *testing.T) {
		srv := dnscrypttest.NewServer(t, nil)
		cl := newClient(t, srv, &dns.Client{Net: "udp"})
		srv.SetFaults(dnscrypttest.Faults{Truncate: true})
		r, err := cl.exchange(t, "udp", query("www.example.", dns.TypeA))
		if err != nil || !r.Truncated || len(r.Answer) != 0 {
			t.Fatalf("got %v, %v", r, err)
		}
	})
}

func TestServerCerts(t *testing.T) {
	now := time.Now()
	srv := dnscrypttest.NewServer(t, nil,
		dnscrypttest.CertSpec{Construction: dnscrypt.XSalsa20Poly1305, Serial: 1},
		dnscrypttest.CertSpec{Construction: dnscrypt.XChaCha20Poly1305, Serial: 2},
		dnscrypttest.CertSpec{Serial: 9, NotAfter: now.Add(-time.Minute), NotBefore: now.Add(-time.Hour)},
		dnscrypttest.CertSpec{Serial: 8, NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)},
		dnscrypttest.CertSpec{Serial: 7, BadSignature: true},
	)
	cl := newClient(t, srv, &dns.Client{Net: "udp"})
	if cl.Cert.Serial != 2 {
		t.Fatalf("chose serial %d, want 2", cl.Cert.Serial)
	}
	// Rotation: the new certificate is offered, the old one still answers.
	if err := srv.SetCerts(dnscrypttest.CertSpec{Serial: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.exchange(t, "udp", query("www.example.", dns.TypeA)); err != nil {
		t.Fatalf("old certificate after rotation: %v", err)
	}
	if cl2 := newClient(t, srv, &dns.Client{Net: "tcp"}); cl2.Cert.Serial != 3 {
		t.Fatalf("after rotation: serial %d, want 3", cl2.Cert.Serial)
	}
	srv.ForgetOldCerts()
	if _, err := cl.exchange(t, "udp", query("www.example.", dns.TypeA)); err == nil {
		t.Fatal("forgotten certificate still answered")
	}
	// Certificates over one transport only.
	srv.SetFaults(dnscrypttest.Faults{NoCertTCP: true})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := certs.Fetch(ctx, &dns.Client{Net: "tcp"}, srv.Addr, dnscrypttest.ProviderName, srv.ProviderKey, now, false); err == nil {
		t.Fatal("certificate served over TCP despite NoCertTCP")
	}
	if srv.CertQueries() != 2 {
		t.Fatalf("certificate queries answered: %d, want 2", srv.CertQueries())
	}
}
