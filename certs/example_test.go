package certs_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
	"golang.org/x/net/proxy"
)

// A provider key pair made from a fixed seed, for reproducible output.
var providerSK = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

func ExampleCreate() {
	cert, err := certs.Create(certs.Template{
		Construction: dnscrypt.XChaCha20Poly1305,
		ResolverPK:   [32]byte{0xde, 0xad, 0xbe, 0xef},
		ClientMagic:  [8]byte{'m', 'y', 'm', 'a', 'g', 'i', 'c', '!'},
		Serial:       7,
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
	}, providerSK)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d bytes, header %x, serial %x\n", len(cert), cert[:8], cert[112:116])
	// Output:
	// 124 bytes, header 444e534300020000, serial 00000007
}

func ExampleVerify() {
	cert, _ := certs.Create(certs.Template{
		Construction: dnscrypt.XSalsa20Poly1305,
		ResolverPK:   [32]byte{0xde, 0xad, 0xbe, 0xef},
		ClientMagic:  [8]byte{'m', 'y', 'm', 'a', 'g', 'i', 'c', '!'},
		Serial:       7,
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
	}, providerSK)
	pk := providerSK.Public().(ed25519.PublicKey)

	c, err := certs.Verify(cert, pk, time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	fmt.Println(c.Serial, c.Construction, c.NotAfter, err)

	_, err = certs.Verify(cert, pk, time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))
	fmt.Println(err, errors.Is(err, certs.ErrExpired))

	cert[100] ^= 1 // a signed byte
	_, err = certs.Verify(cert, pk, time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	fmt.Println(err)
	// Output:
	// 7 X25519-XSalsa20Poly1305 2026-01-02 00:00:00 +0000 UTC <nil>
	// certs: expired at 2026-01-02T00:00:00Z (now 2026-01-03T00:00:00Z) true
	// certs: signature mismatch
}

func ExampleFingerprint() {
	fmt.Println(certs.Fingerprint(providerSK.Public().(ed25519.PublicKey)))
	// Output:
	// 3B6A:27BC:CEB6:A42D:62A3:A8D0:2A6F:0D73:6532:1577:1DE2:43A6:3AC0:48A1:8B59:DA29
}

// Fetch the certificates of a resolver over TCP. Here the resolver is an
// in-process test server; the address, provider name and key come from a
// stamp or from --resolver-address, --provider-name and --provider-key.
func ExampleFetch() {
	resolver, err := dnscrypttest.Start(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resolver.Close()

	ex := &certs.DialExchanger{Dialer: &net.Dialer{}, Timeout: 10 * time.Second}
	cs, err := certs.Fetch(context.Background(), ex, resolver.Addr, dnscrypttest.ProviderName, resolver.ProviderKey, time.Now(), false)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("using certificate", cs[0].Serial, cs[0].Construction)
	// Output:
	// using certificate 1 X25519-XChaCha20Poly1305
}

// Fetch over Tor: DNS over TCP through Tor's SOCKS5 port, never UDP, never
// a direct connection. When nothing answers on the SOCKS port, Fetch
// fails; it does not go around the proxy. (Port 1 stands for a Tor that
// is not running.)
func ExampleFetch_tor() {
	socks, err := proxy.SOCKS5("tcp", "127.0.0.1:1", nil, proxy.Direct) // Tor: 127.0.0.1:9050
	if err != nil {
		fmt.Println(err)
		return
	}
	ex := &certs.DialExchanger{Dialer: socks.(proxy.ContextDialer), Timeout: 30 * time.Second}
	providerPK := make(ed25519.PublicKey, ed25519.PublicKeySize) // from the stamp or --provider-key
	_, err = certs.Fetch(context.Background(), ex, "192.0.2.1:443", "2.dnscrypt-cert.example.com", providerPK, time.Now(), false)
	fmt.Println("no certificate:", errors.Is(err, syscall.ECONNREFUSED))
	// Output:
	// no certificate: true
}

// Fetch without Tor: UDP first, TCP on truncation or failure.
func ExampleUDPWithTCPFallback() {
	resolver, err := dnscrypttest.Start(nil, dnscrypttest.CertSpec{Serial: 2, Construction: dnscrypt.XSalsa20Poly1305})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resolver.Close()

	ex := &certs.UDPWithTCPFallback{UDP: &dns.Client{Net: "udp", Timeout: 2 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := certs.Fetch(ctx, ex, resolver.Addr, dnscrypttest.ProviderName, resolver.ProviderKey, time.Now(), false)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("using certificate", cs[0].Serial, cs[0].Construction)
	// Output:
	// using certificate 2 X25519-XSalsa20Poly1305
}
