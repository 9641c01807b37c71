package tests

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

// writeClientKey writes a fresh client secret key in the format of
// dnscrypt-proxy 1.x's --client-key files ("0101:ABCD:...", 01 01 then the
// 32-byte X25519 secret key) and returns the file and the public key.
func writeClientKey(t *testing.T) (string, [dnscrypt.KeySize]byte) {
	t.Helper()
	kp, err := dnscrypt.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digits := strings.ToUpper(hex.EncodeToString(append([]byte{1, 1}, kp.Secret[:]...)))
	var groups []string
	for len(digits) > 0 {
		groups = append(groups, digits[:4])
		digits = digits[4:]
	}
	path := filepath.Join(t.TempDir(), "client.key")
	if err := os.WriteFile(path, []byte(strings.Join(groups, ":")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, kp.Public
}

// askLab asks the proxy for www.lab.test/A over UDP and TCP and requires
// the lab's address.
func askLab(t *testing.T, p *proxyProc) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		r, err := query(network, p.Addr, "www.lab.test")
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.84.10" {
			t.Fatalf("%s: got %v, want www.lab.test A 127.0.84.10", network, r)
		}
	}
}

// TestClientKey: with -K/--client-key the proxy uses the key of the file:
// dnsdist answers, and the in-process resolver sees the public key derived
// from the file on every query, over UDP and TCP.
func TestClientKey(t *testing.T) {
	lab := sharedLab(t)
	file, pk := writeClientKey(t)

	p := startProxyBin(t, append(labArgs(lab, lab.XSalsa), "--client-key="+file)...)
	waitLog(t, p, "[INFO] Using a user-supplied client secret key", 0)
	askLab(t, p)

	srv := dnscrypttest.NewServer(t, nil)
	p = startProxyBin(t, append(resolverArgs(srv), "-K", file)...)
	for _, network := range []string{"udp", "tcp", "udp"} {
		checkAnswer(t, network, p.Addr, "www.example")
	}
	qs := srv.Queries()
	if len(qs) != 3 {
		t.Fatalf("the resolver saw %d queries, want 3", len(qs))
	}
	for i, q := range qs {
		if q.ClientPK != pk {
			t.Errorf("query %d (%s): client public key %x, want %x (from %s)", i, q.Transport, q.ClientPK, pk, file)
		}
	}
}

// TestEphemeralKeysReal: -E/--ephemeral-keys without a proxy: dnsdist
// answers, and the in-process resolver sees a new client key on every
// query.
func TestEphemeralKeysReal(t *testing.T) {
	lab := sharedLab(t)
	for _, addr := range []string{lab.XSalsa, lab.XChaCha} {
		p := startProxyBin(t, append(labArgs(lab, addr), "-E")...)
		waitLog(t, p, "[INFO] Ephemeral keys enabled - generating a new seed", 0)
		askLab(t, p)
		askLab(t, p)
	}

	srv := dnscrypttest.NewServer(t, nil)
	p := startProxyBin(t, append(resolverArgs(srv), "--ephemeral-keys")...)
	for _, network := range []string{"udp", "udp", "tcp", "tcp"} {
		checkAnswer(t, network, p.Addr, "www.example")
	}
	seen := map[[dnscrypt.KeySize]byte]bool{}
	for i, q := range srv.Queries() {
		if seen[q.ClientPK] {
			t.Errorf("query %d (%s): client key %x used before", i, q.Transport, q.ClientPK[:8])
		}
		seen[q.ClientPK] = true
	}
	if len(seen) != 4 {
		t.Errorf("%d client keys for 4 queries", len(seen))
	}
}
