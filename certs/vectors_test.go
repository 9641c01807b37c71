package certs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// Real certificates captured from dnsdist 1.7.3; see testdata/dnsdist/README.md.
var (
	dnsdistNow      = time.Unix(1795301639, 0) // capture time
	dnsdistFrom     = time.Unix(1795298039, 0)
	dnsdistTill     = time.Unix(1795388039, 0)
	dnsdistProvider = "2.dnscrypt-cert.lab.test"
)

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	if !strings.Contains(name, "/") {
		name = "dnsdist/" + name
	}
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestDnsdistCerts(t *testing.T) {
	pk := ed25519.PublicKey(readTestdata(t, "provider.pub"))
	for _, tc := range []struct {
		file   string
		es     dnscrypt.Construction
		serial uint32
	}{
		{"c1.cert", dnscrypt.XSalsa20Poly1305, 1},
		{"c2.cert", dnscrypt.XChaCha20Poly1305, 2},
	} {
		raw := readTestdata(t, tc.file)
		c, err := Verify(raw, pk, dnsdistNow)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if c.Construction != tc.es || c.Serial != tc.serial || !c.NotBefore.Equal(dnsdistFrom) || !c.NotAfter.Equal(dnsdistTill) {
			t.Errorf("%s: got es %v serial %d %v..%v", tc.file, c.Construction, c.Serial, c.NotBefore, c.NotAfter)
		}
		if !bytes.Equal(c.ResolverPK[:], raw[72:104]) || !bytes.Equal(c.ClientMagic[:], raw[104:112]) || len(c.Extensions()) != 0 {
			t.Errorf("%s: fields do not match the raw bytes", tc.file)
		}
		if _, err := Verify(raw, pk, dnsdistTill.Add(time.Second)); !errors.Is(err, ErrExpired) {
			t.Errorf("%s after ts-end: got %v, want ErrExpired", tc.file, err)
		}
	}
}

// TestCreateMatchesDnsdist rebuilds dnsdist's certificates with Create and
// the same provider key: Ed25519 is deterministic, so the bytes must match.
func TestCreateMatchesDnsdist(t *testing.T) {
	sk := ed25519.PrivateKey(readTestdata(t, "provider.key"))
	pk := ed25519.PublicKey(readTestdata(t, "provider.pub"))
	if !sk.Public().(ed25519.PublicKey).Equal(pk) {
		t.Fatal("provider.key does not match provider.pub")
	}
	for _, file := range []string{"c1.cert", "c2.cert"} {
		want := readTestdata(t, file)
		c, err := Verify(want, pk, dnsdistNow)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Create(Template{
			Construction: c.Construction, ResolverPK: c.ResolverPK, ClientMagic: c.ClientMagic,
			Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		}, sk)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\ngot  %x\nwant %x", file, got, want)
		}
	}
}

// TestDnsdistResponse feeds dnsdist's real answer through Fetch.
func TestDnsdistResponse(t *testing.T) {
	pk := ed25519.PublicKey(readTestdata(t, "provider.pub"))
	wire := readTestdata(t, "response.bin")
	ex := exchangerFunc(func(_ context.Context, q *dns.Msg, _ string) (*dns.Msg, time.Duration, error) {
		r := new(dns.Msg)
		if err := r.Unpack(wire); err != nil {
			return nil, 0, err
		}
		r.Id = q.Id // the capture answered ID 0x1234
		return r, 0, nil
	})
	cs, err := Fetch(context.Background(), ex, "127.0.0.1:443", dnsdistProvider, pk, dnsdistNow, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Serial != 2 || cs[1].Serial != 1 {
		t.Fatalf("got %v, want serials 2, 1", cs)
	}
	if !bytes.Equal(cs[0].Raw, readTestdata(t, "c2.cert")) || !bytes.Equal(cs[1].Raw, readTestdata(t, "c1.cert")) {
		t.Errorf("certificates differ from c2.cert, c1.cert")
	}
}

// TestDigPresentation decodes dig's presentation form of the same records
// (its own escaping, independent of miekg/dns) through txtData.
func TestDigPresentation(t *testing.T) {
	want := [][]byte{readTestdata(t, "c1.cert"), readTestdata(t, "c2.cert")}
	f, err := os.Open("testdata/dnsdist/dig-short.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var i int
	for ; sc.Scan(); i++ {
		rr, err := dns.NewRR(dnsdistProvider + ". 3600 IN TXT " + sc.Text())
		if err != nil {
			t.Fatal(err)
		}
		got, err := txtData(rr.(*dns.TXT))
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(want) || !bytes.Equal(got, want[i]) {
			t.Errorf("line %d: got %x", i, got)
		}
	}
	if i != len(want) {
		t.Errorf("got %d lines, want %d", i, len(want))
	}
}

// TestAmeshkovCert verifies a certificate captured from the ameshkov/dnscrypt
// v2.4.0 server (AdGuard's DNSCrypt library), which uses an all-zero client
// magic and its start time as serial. The protocol does not forbid such a
// magic, and refusing it would cut the proxy off from these resolvers: a
// regression test for a rule once wrongly enforced here.
func TestAmeshkovCert(t *testing.T) {
	pk := ed25519.PublicKey(readTestdata(t, "ameshkov/provider.pub"))
	raw := readTestdata(t, "ameshkov/c.cert")
	c, err := Verify(raw, pk, time.Unix(1795302960, 0))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientMagic != [8]byte{} || c.Construction != dnscrypt.XSalsa20Poly1305 || c.Serial != 1795302937 {
		t.Fatalf("got magic %x, es %v, serial %d", c.ClientMagic, c.Construction, c.Serial)
	}
}
