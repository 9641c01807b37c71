package dnscrypt_test

import (
	"crypto/rand"
	"fmt"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

func Example() {
	// Both sides' key pairs; a real client takes the resolver key and the
	// client magic from the resolver's certificate.
	client, _ := dnscrypt.GenerateKeyPair(rand.Reader)
	resolver, _ := dnscrypt.GenerateKeyPair(rand.Reader)
	magic := [8]byte{'e', 'x', 'a', 'm', 'p', 'l', 'e', '!'}
	key, err := dnscrypt.NewSharedKey(dnscrypt.XChaCha20Poly1305, client, &resolver.Public, magic)
	if err != nil {
		panic(err)
	}

	// A DNS query for "example.com. A", sealed for UDP.
	query := []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" +
		"\x07example\x03com\x00\x00\x01\x00\x01")
	var nonce [dnscrypt.HalfNonceSize]byte
	rand.Read(nonce[:])
	pkt, err := dnscrypt.SealQuery(nil, query, key, &nonce,
		dnscrypt.UDPPaddedLen(len(query), dnscrypt.MinUDPQueryLen))
	if err != nil {
		panic(err)
	}
	fmt.Println("query packet:", len(pkt), "bytes")

	// The resolver opens it and answers with the query echoed.
	h, _ := dnscrypt.ParseQueryHeader(pkt)
	rkey, _ := dnscrypt.NewResolverKey(dnscrypt.XChaCha20Poly1305, &resolver.Secret, &h)
	msg, _ := dnscrypt.OpenQuery(nil, pkt, rkey)
	var rnonce [dnscrypt.HalfNonceSize]byte
	rand.Read(rnonce[:])
	resp, _ := dnscrypt.SealResponse(nil, msg, rkey, &h.Nonce, &rnonce,
		dnscrypt.TCPPaddedLen(len(msg), 0))

	answer, err := dnscrypt.OpenResponse(nil, resp, key, &nonce)
	fmt.Println("answer:", len(answer), "bytes, error:", err)
	// Output:
	// query packet: 324 bytes
	// answer: 29 bytes, error: <nil>
}
