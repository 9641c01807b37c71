package dnscrypt

import (
	"bytes"
	"testing"
)

// fuzzKeys are fixed keys, so that a crasher found once reproduces.
func fuzzKeys(tb testing.TB, c Construction) (client, resolver *SharedKey) {
	return sodiumKeys(tb, c)
}

// FuzzOpenResponse feeds arbitrary bytes to OpenResponse. It must never
// panic, and whatever it accepts must have been sealed with the key: the
// seeds are real responses, so mutations exercise every check.
func FuzzOpenResponse(f *testing.F) {
	for _, c := range constructions {
		f.Add(uint8(c), unhex(f, sodium.responsePkt[c]))
	}
	f.Add(uint8(1), []byte("r6fnvWj8"))
	f.Add(uint8(2), make([]byte, ResponseOverhead+MinDNSSize+1))
	cn := [12]byte(unhex(f, sodium.clientNonce))
	f.Fuzz(func(t *testing.T, es uint8, resp []byte) {
		c := constructions[int(es)%len(constructions)]
		client, resolver := fuzzKeys(t, c)
		msg, err := OpenResponse(nil, resp, client, &cn)
		if err != nil {
			if len(msg) != 0 {
				t.Fatalf("output with error %v", err)
			}
			return
		}
		if len(msg) < MinDNSSize || len(msg) >= len(resp)-ResponseOverhead {
			t.Fatalf("message of %d bytes from a %d-byte response", len(msg), len(resp))
		}
		// Accepted: re-sealing with the same nonces and length must give
		// the same bytes back, or the tag check let a forgery through.
		rn := [12]byte(resp[respNonceOffset+HalfNonceSize:])
		again, err := SealResponse(nil, msg, resolver, &cn, &rn, len(resp)-ResponseOverhead)
		if err != nil || !bytes.Equal(again, resp) {
			t.Fatalf("accepted response is not what the key seals: %v", err)
		}
	})
}

// FuzzOpenQuery does the same for the resolver side.
func FuzzOpenQuery(f *testing.F) {
	for _, c := range constructions {
		f.Add(uint8(c), unhex(f, sodium.queryPkt[c]))
	}
	f.Add(uint8(1), make([]byte, QueryOverhead+MinDNSSize+1))
	f.Fuzz(func(t *testing.T, es uint8, q []byte) {
		c := constructions[int(es)%len(constructions)]
		client, resolver := fuzzKeys(t, c)
		msg, err := OpenQuery(nil, q, resolver)
		if err != nil {
			return
		}
		h, err := ParseQueryHeader(q)
		if err != nil {
			t.Fatalf("OpenQuery accepted what ParseQueryHeader refuses: %v", err)
		}
		again, err := SealQuery(nil, msg, client, &h.Nonce, len(q)-QueryOverhead)
		if err != nil || !bytes.Equal(again, q) {
			t.Fatalf("accepted query is not what the key seals: %v", err)
		}
	})
}

// FuzzUnpad checks Unpad against its definition, and Pad against Unpad.
func FuzzUnpad(f *testing.F) {
	for _, s := range []string{"", "\x80", "abc\x80\x00\x00", "abc", "\x00", "a\x80\x00\x01"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := Unpad(b)
		if err != nil {
			trimmed := bytes.TrimRight(b, "\x00")
			if len(trimmed) > 0 && trimmed[len(trimmed)-1] == 0x80 {
				t.Fatalf("Unpad(%x) refused well-formed padding", b)
			}
			return
		}
		if len(msg) >= len(b) || b[len(msg)] != 0x80 || len(bytes.Trim(b[len(msg)+1:], "\x00")) != 0 {
			t.Fatalf("Unpad(%x) = %x", b, msg)
		}
		padded, err := Pad(nil, msg, len(b))
		if err != nil || !bytes.Equal(padded, b) {
			t.Fatalf("Pad(Unpad(%x)) = %x, %v", b, padded, err)
		}
	})
}
