package tortest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// TestOnionServices publishes two onion services, one to an echo server and
// one to the lab's DNS-over-TLS listener (dnsdist), and reaches both by
// their .onion names through the client's SocksPort.
func TestOnionServices(t *testing.T) {
	lab := labtest.StartTB(t, labtest.Options{NoGoServer: true, NoDNSSEC: true})
	echo, _ := echoServer(t)
	n := StartTB(t, Options{OnionServices: []OnionService{
		{Name: "echo", Port: 7, Target: echo},
		{Name: "dot", Port: 853, Target: lab.DoT},
	}})
	t.Logf("start %v; onion host: descriptors uploaded %v after its launch, both services reachable after %v",
		n.StartTime.Round(time.Millisecond), n.OnionUploadTime.Round(time.Millisecond), n.OnionReadyTime.Round(time.Millisecond))

	if len(n.Onions) != 2 || n.Onions["echo"] == n.Onions["dot"] {
		t.Fatalf("Onions: got %v, want two different hosts", n.Onions)
	}
	for name, port := range map[string]string{"echo": "7", "dot": "853"} {
		host := n.Onions[name]
		if !onionHostOK.MatchString(host) {
			t.Errorf("Onions[%s]: got %q, want a v3 onion host", name, host)
		}
		if got, want := n.OnionAddr(name), host+":"+port; got != want {
			t.Errorf("OnionAddr(%s): got %q, want %q", name, got, want)
		}
	}
	if got := n.OnionAddr("nosuch"); got != "" {
		t.Errorf("OnionAddr(nosuch): got %q, want \"\"", got)
	}
	if _, ok := n.Pids()["onion"]; !ok || slices.Contains(n.Relays, "onion") {
		t.Errorf("Pids %v, Relays %v: want an onion host that is no relay", n.Pids(), n.Relays)
	}

	t.Run("echo", func(t *testing.T) {
		// A new username means a new circuit, hence a new rendezvous.
		for i, user := range []string{"", "onion-a", "onion-b"} {
			_, took := dial(t, n, user, n.OnionAddr("echo"))
			t.Logf("CONNECT %d (user %q) to the onion service took %v", i, user, took.Round(time.Millisecond))
		}
	})

	t.Run("DoT", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		raw, err := dialer(t, n, "onion-dot").DialContext(ctx, "tcp", n.OnionAddr("dot"))
		if err != nil {
			t.Fatalf("SOCKS CONNECT to %s: %v", n.OnionAddr("dot"), err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		// Pinned as a DoT stamp pins: the SHA-256 of the TBS part.
		c := tls.Client(raw, &tls.Config{
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(certs [][]byte, _ [][]*x509.Certificate) error {
				if len(certs) == 0 {
					return errors.New("no certificate")
				}
				cert, err := x509.ParseCertificate(certs[0])
				if err != nil {
					return err
				}
				if sum := sha256.Sum256(cert.RawTBSCertificate); hex.EncodeToString(sum[:]) != lab.TLSTBSHash {
					return errors.New("certificate does not match the lab's pin")
				}
				return nil
			},
		})
		co := &dns.Conn{Conn: c}
		for i, name := range []string{"www.lab.test.", "huge.lab.test."} {
			q := new(dns.Msg)
			q.SetQuestion(name, map[int]uint16{0: dns.TypeA, 1: dns.TypeTXT}[i])
			if err := co.WriteMsg(q); err != nil {
				t.Fatalf("%s over DoT through the onion service: %v", name, err)
			}
			r, err := co.ReadMsg()
			if err != nil {
				t.Fatalf("%s over DoT through the onion service: %v", name, err)
			}
			if want := map[int]int{0: 1, 1: 50}[i]; r.Id != q.Id || r.Truncated || len(r.Answer) != want {
				t.Errorf("%s: got ID %d (want %d), TC=%v, %d records, want %d", name, r.Id, q.Id, r.Truncated, len(r.Answer), want)
			}
		}
	})

	t.Run("other port", func(t *testing.T) {
		// The service has no virtual port 8: tor refuses the stream.
		host := n.Onions["echo"]
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := dialer(t, n, "").DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(8)))
		if err == nil {
			c.Close()
			t.Errorf("CONNECT to %s:8 (no such virtual port) succeeded", host)
		}
	})
}
