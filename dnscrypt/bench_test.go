package dnscrypt

import (
	"crypto/rand"
	"testing"
)

// BenchmarkSealOpen measures what the proxy does per query: seal a ~100-byte
// query (padded to 256 bytes, as over UDP) and open a ~100-byte answer,
// with caller-supplied buffers.
func BenchmarkSealOpen(b *testing.B) {
	for _, c := range constructions {
		b.Run(c.String(), func(b *testing.B) {
			client, resolver := pair(b, c)
			query, answer := dnsMessage(100), dnsMessage(110)
			nonce := randomNonce(b)
			resp, err := SealResponse(nil, answer, resolver, nonce, randomNonce(b), 128)
			if err != nil {
				b.Fatal(err)
			}
			qbuf := make([]byte, 0, 512)
			abuf := make([]byte, 0, 512)
			b.ReportAllocs()
			b.SetBytes(int64(len(query) + len(answer)))
			for b.Loop() {
				if _, err := SealQuery(qbuf, query, client, nonce, 256); err != nil {
					b.Fatal(err)
				}
				if _, err := OpenResponse(abuf, resp, client, nonce); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSealQuery(b *testing.B) {
	for _, c := range constructions {
		b.Run(c.String(), func(b *testing.B) {
			client, _ := pair(b, c)
			query := dnsMessage(100)
			nonce := randomNonce(b)
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := SealQuery(buf, query, client, nonce, 256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpenResponse(b *testing.B) {
	for _, c := range constructions {
		b.Run(c.String(), func(b *testing.B) {
			client, resolver := pair(b, c)
			nonce := randomNonce(b)
			resp, err := SealResponse(nil, dnsMessage(110), resolver, nonce, randomNonce(b), 128)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := OpenResponse(buf, resp, client, nonce); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNewSharedKey is the per-query cost of ephemeral keys: a key pair
// and a shared key.
func BenchmarkNewSharedKey(b *testing.B) {
	rkp, _ := GenerateKeyPair(rand.Reader)
	for _, c := range constructions {
		b.Run(c.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				kp, err := GenerateKeyPair(rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := NewSharedKey(c, kp, &rkp.Public, [8]byte{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
