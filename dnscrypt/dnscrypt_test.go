package dnscrypt

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
)

var constructions = []Construction{XSalsa20Poly1305, XChaCha20Poly1305}

// pair returns fresh client and resolver keys for c.
func pair(tb testing.TB, c Construction) (client, resolver *SharedKey) {
	tb.Helper()
	ckp, err := GenerateKeyPair(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	rkp, err := GenerateKeyPair(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	magic := [8]byte{'c', 'l', 'i', 'e', 'n', 't', 'm', 'g'}
	client, err = NewSharedKey(c, ckp, &rkp.Public, magic)
	if err != nil {
		tb.Fatal(err)
	}
	h := QueryHeader{ClientMagic: magic, ClientPK: ckp.Public}
	resolver, err = NewResolverKey(c, &rkp.Secret, &h)
	if err != nil {
		tb.Fatal(err)
	}
	return client, resolver
}

func randomNonce(tb testing.TB) *[HalfNonceSize]byte {
	var n [HalfNonceSize]byte
	rand.Read(n[:])
	return &n
}

// dnsMessage returns a plausible DNS message of n bytes (n >= MinDNSSize).
func dnsMessage(n int) []byte {
	m := make([]byte, n)
	for i := range m {
		m[i] = byte(i*7 + 1)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	for _, c := range constructions {
		for _, n := range []int{MinDNSSize, 31, 32, 33, 63, 64, 100, 255, 512, 1500, 4096, MaxPaddedQueryLen - 1} {
			t.Run(fmt.Sprintf("%v/%d", c, n), func(t *testing.T) {
				client, resolver := pair(t, c)
				msg := dnsMessage(n)
				nonce := randomNonce(t)
				padded := UDPPaddedLen(n, MinUDPQueryLen)
				if padded > MaxPaddedQueryLen {
					padded = n + 1
				}
				q, err := SealQuery(nil, msg, client, nonce, padded)
				if err != nil {
					t.Fatal(err)
				}
				if len(q) != QueryOverhead+padded {
					t.Fatalf("query length: got %d, want %d", len(q), QueryOverhead+padded)
				}
				h, err := ParseQueryHeader(q)
				if err != nil {
					t.Fatal(err)
				}
				if h.Nonce != *nonce || h.ClientPK != client.ClientPublicKey() || h.ClientMagic != client.ClientMagic() {
					t.Fatalf("header: got %+v", h)
				}
				got, err := OpenQuery(nil, q, resolver)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("OpenQuery: %v, equal=%v", err, bytes.Equal(got, msg))
				}
				if n > MaxDNSSize-ResponseOverhead-1 {
					return
				}
				resp, err := SealResponse(nil, msg, resolver, nonce, randomNonce(t), n+1)
				if err != nil {
					t.Fatal(err)
				}
				got, err = OpenResponse(nil, resp, client, nonce)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("OpenResponse: %v, equal=%v", err, bytes.Equal(got, msg))
				}
			})
		}
	}
}

// TestAppend checks that the functions append to dst and keep its prefix.
func TestAppend(t *testing.T) {
	client, resolver := pair(t, XChaCha20Poly1305)
	msg := dnsMessage(40)
	nonce := randomNonce(t)
	prefix := []byte("prefix")
	q, err := SealQuery(append([]byte(nil), prefix...), msg, client, nonce, 64)
	if err != nil || !bytes.HasPrefix(q, prefix) || len(q) != len(prefix)+QueryOverhead+64 {
		t.Fatalf("SealQuery: len %d, err %v", len(q), err)
	}
	out, err := OpenQuery(append([]byte(nil), prefix...), q[len(prefix):], resolver)
	if err != nil || !bytes.Equal(out, append(append([]byte(nil), prefix...), msg...)) {
		t.Fatalf("OpenQuery: got %x, %v", out, err)
	}
	r, err := SealResponse(append([]byte(nil), prefix...), msg, resolver, nonce, nonce, 128)
	if err != nil || !bytes.HasPrefix(r, prefix) {
		t.Fatalf("SealResponse: %v", err)
	}
	out, err = OpenResponse(append([]byte(nil), prefix...), r[len(prefix):], client, nonce)
	if err != nil || !bytes.Equal(out, append(append([]byte(nil), prefix...), msg...)) {
		t.Fatalf("OpenResponse: got %x, %v", out, err)
	}
}

// TestTamperResponse flips every bit of every byte of a sealed response, one
// at a time: each must be rejected, with the error naming the field hit.
func TestTamperResponse(t *testing.T) {
	for _, c := range constructions {
		t.Run(c.String(), func(t *testing.T) {
			client, resolver := pair(t, c)
			nonce := randomNonce(t)
			resp, err := SealResponse(nil, dnsMessage(100), resolver, nonce, randomNonce(t), 192)
			if err != nil {
				t.Fatal(err)
			}
			for i := range resp {
				var want error
				switch {
				case i < ResolverMagicLen:
					want = ErrMagic
				case i < respNonceOffset+HalfNonceSize:
					want = ErrNonce
				default: // resolver nonce, tag, ciphertext
					want = ErrAuth
				}
				for bit := range 8 {
					bad := bytes.Clone(resp)
					bad[i] ^= 1 << bit
					out, err := OpenResponse(nil, bad, client, nonce)
					if !errors.Is(err, want) {
						t.Fatalf("byte %d bit %d: got %v, want %v", i, bit, err, want)
					}
					if len(out) != 0 {
						t.Fatalf("byte %d: output on error", i)
					}
				}
			}
		})
	}
}

// TestTamperQuery does the same for the resolver side.
func TestTamperQuery(t *testing.T) {
	for _, c := range constructions {
		t.Run(c.String(), func(t *testing.T) {
			client, resolver := pair(t, c)
			q, err := SealQuery(nil, dnsMessage(50), client, randomNonce(t), 256)
			if err != nil {
				t.Fatal(err)
			}
			for i := range q {
				var want error
				switch {
				case i < queryPKOffset:
					want = ErrMagic
				case i < queryNonceOffset:
					want = ErrKey
				default:
					want = ErrAuth
				}
				bad := bytes.Clone(q)
				bad[i] ^= 0x40
				if _, err := OpenQuery(nil, bad, resolver); !errors.Is(err, want) {
					t.Fatalf("byte %d: got %v, want %v", i, err, want)
				}
			}
		})
	}
}

// TestWrongKey checks that a response sealed under another key, or with the
// other construction, does not open.
func TestWrongKey(t *testing.T) {
	client, _ := pair(t, XSalsa20Poly1305)
	_, other := pair(t, XSalsa20Poly1305)
	nonce := randomNonce(t)
	resp, err := SealResponse(nil, dnsMessage(60), other, nonce, nonce, 128)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenResponse(nil, resp, client, nonce); !errors.Is(err, ErrAuth) {
		t.Fatalf("other key: got %v, want ErrAuth", err)
	}
	// Same X25519 keys, other construction.
	kp, _ := GenerateKeyPair(rand.Reader)
	rkp, _ := GenerateKeyPair(rand.Reader)
	k1, _ := NewSharedKey(XSalsa20Poly1305, kp, &rkp.Public, [8]byte{})
	k2, _ := NewSharedKey(XChaCha20Poly1305, kp, &rkp.Public, [8]byte{})
	h := QueryHeader{ClientPK: kp.Public}
	r2, _ := NewResolverKey(XChaCha20Poly1305, &rkp.Secret, &h)
	resp, err = SealResponse(nil, dnsMessage(60), r2, nonce, nonce, 128)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenResponse(nil, resp, k2, nonce); err != nil {
		t.Fatalf("es2 with es2 key: %v", err)
	}
	if _, err := OpenResponse(nil, resp, k1, nonce); !errors.Is(err, ErrAuth) {
		t.Fatalf("es2 packet with es1 key: got %v, want ErrAuth", err)
	}
}

// TestBadPadding seals responses whose plaintext is not well padded: the tag
// verifies, so only the padding check can refuse them.
func TestBadPadding(t *testing.T) {
	client, resolver := pair(t, XChaCha20Poly1305)
	nonce := randomNonce(t)
	msg := dnsMessage(40)
	for name, plain := range map[string][]byte{
		"no 0x80":           append(bytes.Clone(msg), make([]byte, 24)...),
		"0x81 marker":       append(append(bytes.Clone(msg), 0x81), make([]byte, 23)...),
		"garbage after":     append(append(bytes.Clone(msg), 0x80), 0, 0, 1),
		"all zero":          make([]byte, 64),
		"message too short": append(dnsMessage(MinDNSSize-1), 0x80, 0, 0, 0, 0, 0, 0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			resp := sealRaw(t, resolver, nonce, plain)
			_, err := OpenResponse(nil, resp, client, nonce)
			want := ErrPadding
			if name == "message too short" {
				want = ErrShort
			}
			if !errors.Is(err, want) {
				t.Fatalf("got %v, want %v", err, want)
			}
		})
	}
}

// sealRaw seals plain as the complete plaintext (message and padding) of a
// response, bypassing Pad.
func sealRaw(tb testing.TB, k *SharedKey, nonce *[HalfNonceSize]byte, plain []byte) []byte {
	tb.Helper()
	resp, err := SealResponseRaw(nil, plain, k, nonce, nonce)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

func TestShortAndLong(t *testing.T) {
	client, resolver := pair(t, XSalsa20Poly1305)
	nonce := randomNonce(t)
	if _, err := SealQuery(nil, dnsMessage(MinDNSSize-1), client, nonce, 256); !errors.Is(err, ErrShort) {
		t.Fatalf("short query: got %v", err)
	}
	for _, p := range []int{0, 30, 31, MaxPaddedQueryLen + 1} {
		if _, err := SealQuery(nil, dnsMessage(31), client, nonce, p); !errors.Is(err, ErrPaddedLen) {
			t.Fatalf("padded length %d: got %v", p, err)
		}
	}
	for _, n := range []int{0, 1, ResponseOverhead, ResponseOverhead + MinDNSSize} {
		if _, err := OpenResponse(nil, make([]byte, n), client, nonce); !errors.Is(err, ErrShort) {
			t.Fatalf("response of %d bytes: got %v", n, err)
		}
		if _, err := OpenQuery(nil, make([]byte, n), resolver); !errors.Is(err, ErrShort) {
			t.Fatalf("query of %d bytes: got %v", n, err)
		}
	}
	if _, err := OpenResponse(nil, make([]byte, MaxDNSSize+1), client, nonce); !errors.Is(err, ErrLong) {
		t.Fatalf("long response: got %v", err)
	}
}

func TestUnsupportedConstruction(t *testing.T) {
	kp, _ := GenerateKeyPair(rand.Reader)
	rkp, _ := GenerateKeyPair(rand.Reader)
	for _, c := range []Construction{0, 3, 0xffff} {
		if _, err := NewSharedKey(c, kp, &rkp.Public, [8]byte{}); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("construction %d: got %v", c, err)
		}
	}
}

// lowOrderPoints are the X25519 public keys of small order that libsodium
// blacklists (x25519_ref10.c), and the same with the ignored top bit set.
var lowOrderPoints = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"0000000000000000000000000000000000000000000000000000000000000080",
	"0100000000000000000000000000000000000000000000000000000000000080",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
}

func TestWeakKeys(t *testing.T) {
	kp, err := GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range constructions {
		for _, p := range lowOrderPoints {
			if _, err := NewSharedKey(c, kp, key32(t, p), [8]byte{}); !errors.Is(err, ErrWeakKey) {
				t.Fatalf("%v, resolver key %s: got %v, want ErrWeakKey", c, p, err)
			}
			h := QueryHeader{ClientPK: *key32(t, p)}
			if _, err := NewResolverKey(c, &kp.Secret, &h); !errors.Is(err, ErrWeakKey) {
				t.Fatalf("%v, client key %s: got %v, want ErrWeakKey", c, p, err)
			}
		}
	}
}

func TestCheckPublicKey(t *testing.T) {
	for _, p := range lowOrderPoints {
		if err := CheckPublicKey(key32(t, p)); !errors.Is(err, ErrWeakKey) {
			t.Errorf("%s: got %v, want ErrWeakKey", p, err)
		}
	}
	for range 20 {
		kp, err := GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckPublicKey(&kp.Public); err != nil {
			t.Errorf("%x: %v", kp.Public, err)
		}
	}
}

func TestUnpad(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" with err
		err  bool
	}{
		{in: "abc\x80", want: "abc"},
		{in: "abc\x80\x00\x00", want: "abc"},
		{in: "\x80", want: ""},
		{in: "\x80\x80", want: "\x80"},
		{in: "ab\x80\x00\x80\x00", want: "ab\x80\x00"},
		{in: "", err: true},
		{in: "\x00\x00", err: true},
		{in: "abc", err: true},
		{in: "abc\x80\x01", err: true},
		{in: "abc\x7f\x00", err: true},
	} {
		got, err := Unpad([]byte(tc.in))
		if tc.err {
			if !errors.Is(err, ErrPadding) {
				t.Errorf("Unpad(%q): got %q, %v; want ErrPadding", tc.in, got, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("Unpad(%q): got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestPaddedLens(t *testing.T) {
	for _, tc := range []struct{ msgLen, minLen, want int }{
		{17, 256, 256},
		{29, 256, 256},
		{255, 256, 256},
		{256, 256, 320},
		{300, 256, 320},
		{100, 320, 320},
		{100, 0, 128},
		{63, 0, 64},
		{64, 0, 128},
		{100, 300, 320}, // minLen rounded up to a multiple of 64
	} {
		if got := UDPPaddedLen(tc.msgLen, tc.minLen); got != tc.want {
			t.Errorf("UDPPaddedLen(%d, %d) = %d, want %d", tc.msgLen, tc.minLen, got, tc.want)
		}
	}
	for n := 1; n < 2000; n++ {
		for r := range 256 {
			p := TCPPaddedLen(n, byte(r))
			if pad := p - n; p%BlockSize != 0 || pad < 1 || pad > MaxPadding {
				t.Fatalf("TCPPaddedLen(%d, %d) = %d: padding %d", n, r, p, p-n)
			}
		}
	}
}

// TestNoAllocs checks the promise of the append-style API: with a big
// enough dst, sealing and opening allocate nothing.
func TestNoAllocs(t *testing.T) {
	for _, c := range constructions {
		client, resolver := pair(t, c)
		msg := dnsMessage(100)
		nonce := randomNonce(t)
		resp, err := SealResponse(nil, msg, resolver, nonce, nonce, 128)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, 1024)
		out := make([]byte, 0, 1024)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := SealQuery(buf, msg, client, nonce, 256); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenResponse(out, resp, client, nonce); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: %v allocations per seal+open, want 0", c, allocs)
		}
		inPlace := make([]byte, len(msg), 1024)
		allocs = testing.AllocsPerRun(100, func() {
			copy(inPlace, msg)
			if _, err := SealQuery(inPlace[:0], inPlace[:len(msg)], client, nonce, 256); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: %v allocations per seal in place, want 0", c, allocs)
		}
	}
}
