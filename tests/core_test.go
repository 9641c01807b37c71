package tests

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/proxy"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestCertsFromDnsdist fetches and verifies the certificates of the three
// dnsdist binds over UDP; the two-certificate bind must give serial 2.
func TestCertsFromDnsdist(t *testing.T) {
	lab := sharedLab(t)
	for _, tc := range []struct {
		name   string
		addr   string
		n      int
		es     dnscrypt.Construction
		serial uint32
	}{
		{"es1", lab.XSalsa, 1, dnscrypt.XSalsa20Poly1305, 1},
		{"es2", lab.XChaCha, 1, dnscrypt.XChaCha20Poly1305, 1},
		{"two certs", lab.Mixed, 2, dnscrypt.XChaCha20Poly1305, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := certs.Fetch(ctxT(t, 5*time.Second), &dns.Client{Net: "udp"}, tc.addr,
				lab.ProviderName, lab.ProviderKey, time.Now(), false)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != tc.n || cs[0].Construction != tc.es || cs[0].Serial != tc.serial {
				t.Fatalf("got %d certs, best es %v serial %d; want %d, %v, %d",
					len(cs), cs[0].Construction, cs[0].Serial, tc.n, tc.es, tc.serial)
			}
			if !cs[0].NotBefore.Equal(lab.CertNotBefore) || !cs[0].NotAfter.Equal(lab.CertNotAfter) {
				t.Fatalf("validity %v..%v, lab says %v..%v", cs[0].NotBefore, cs[0].NotAfter, lab.CertNotBefore, lab.CertNotAfter)
			}
			// Another provider key must not verify them.
			other := append([]byte(nil), lab.ProviderKey...)
			other[0] ^= 1
			_, err = certs.Fetch(ctxT(t, 5*time.Second), &dns.Client{Net: "udp"}, tc.addr,
				lab.ProviderName, other, time.Now(), false)
			if !errors.Is(err, certs.ErrNoValidCert) {
				t.Fatalf("wrong provider key: got %v, want ErrNoValidCert", err)
			}
		})
	}
}

// TestCertsOverTCP fetches the Go server's certificate over TCP: directly,
// and through microsocks without and with a username and password.
func TestCertsOverTCP(t *testing.T) {
	lab := sharedLab(t)
	noAuth, err := proxy.SOCKS5("tcp", lab.Socks, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := proxy.SOCKS5("tcp", lab.SocksAuth, &proxy.Auth{User: lab.SocksUser, Password: lab.SocksPass}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	badAuth, err := proxy.SOCKS5("tcp", lab.SocksAuth, &proxy.Auth{User: lab.SocksUser, Password: "wrong"}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ex   certs.Exchanger
		ok   bool
	}{
		{"direct", &dns.Client{Net: "tcp"}, true},
		{"socks", &certs.DialExchanger{Dialer: noAuth.(proxy.ContextDialer)}, true},
		{"socks with auth", &certs.DialExchanger{Dialer: auth.(proxy.ContextDialer)}, true},
		{"socks with a wrong password", &certs.DialExchanger{Dialer: badAuth.(proxy.ContextDialer)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := certs.Fetch(ctxT(t, 5*time.Second), tc.ex, lab.Go, lab.ProviderName, lab.ProviderKey, time.Now(), false)
			if !tc.ok {
				if err == nil {
					t.Fatal("fetched through a SOCKS proxy that should refuse")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cs[0].Construction != dnscrypt.XSalsa20Poly1305 {
				t.Fatalf("es %v, want 1", cs[0].Construction)
			}
		})
	}
}

// TestRealExchange seals real queries, sends them to real servers and opens
// their answers, for es 1 and es 2, over UDP and TCP.
func TestRealExchange(t *testing.T) {
	lab := sharedLab(t)
	for _, s := range []struct{ name, addr string }{
		{"dnsdist es1", lab.XSalsa}, {"dnsdist es2", lab.XChaCha}, {"dnsdist two certs", lab.Mixed},
		{"go server es1", lab.Go},
	} {
		t.Run(s.name, func(t *testing.T) {
			c, err := dnscrypttest.NewClient(ctxT(t, 5*time.Second), &certs.UDPWithTCPFallback{}, s.addr, lab.ProviderName, lab.ProviderKey)
			if err != nil {
				t.Fatal(err)
			}
			for _, network := range []string{"udp", "tcp"} {
				r, err := c.Exchange(ctxT(t, 5*time.Second), network, msg("www.lab.test", dns.TypeA))
				if err != nil {
					t.Fatalf("%s: %v", network, err)
				}
				if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.84.10" {
					t.Fatalf("%s: %v", network, r)
				}
			}
		})
	}
}

// TestRealRotation rotates dnsdist's certificate through its console: the
// new serial is picked up, the old key keeps working until it is removed.
func TestRealRotation(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true})
	old, err := dnscrypttest.NewClient(ctxT(t, 5*time.Second), &dns.Client{}, lab.XSalsa, lab.ProviderName, lab.ProviderKey)
	if err != nil {
		t.Fatal(err)
	}
	if old.Cert.Serial != 1 {
		t.Fatalf("serial %d before rotation", old.Cert.Serial)
	}
	bind := strconv.Itoa(lab.BindOf(lab.XSalsa))
	if out, err := lab.Rotate("-b", bind); err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	cur, err := dnscrypttest.NewClient(ctxT(t, 5*time.Second), &dns.Client{}, lab.XSalsa, lab.ProviderName, lab.ProviderKey)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Cert.Serial != 2 {
		t.Fatalf("serial %d after rotation, want 2", cur.Cert.Serial)
	}
	for name, c := range map[string]*dnscrypttest.Client{"old": old, "new": cur} {
		if _, err := c.Exchange(ctxT(t, 5*time.Second), "udp", msg("www.lab.test", dns.TypeA)); err != nil {
			t.Fatalf("%s certificate after rotation: %v", name, err)
		}
	}
	if out, err := lab.Rotate("-b", bind, "--remove-old"); err != nil {
		t.Fatalf("rotate --remove-old: %v\n%s", err, out)
	}
	_, err = old.Exchange(ctxT(t, time.Second), "udp", msg("www.lab.test", dns.TypeA))
	if err == nil {
		t.Fatal("the removed certificate still answers")
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Fatalf("removed certificate: got %v, want a timeout (dnsdist drops such queries)", err)
	}
}

func msg(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}
