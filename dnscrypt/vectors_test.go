package dnscrypt

import (
	"bytes"
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/chacha20"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt/internal/sbox"
)

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex in test vector: %v", err)
	}
	return b
}

func key32(tb testing.TB, s string) *[32]byte {
	tb.Helper()
	return (*[32]byte)(unhex(tb, s))
}

// TestHChaCha20Vector checks the subkey derivation of es-version 2 against
// the test vector of draft-denis-dprive-dnscrypt, Appendix 1 ("Test Vector
// for the HChaCha20 Block Function").
func TestHChaCha20Vector(t *testing.T) {
	key := unhex(t, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	nonce := unhex(t, "000000090000004a0000000031415927")
	want := unhex(t, "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
	got, err := chacha20.HChaCha20(key, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("HChaCha20: got %x, want %x", got, want)
	}
}

// TestNaClBoxVector checks es-version 1 against a crypto_box vector made with
// the C implementation of NaCl (the one in golang.org/x/crypto's
// nacl/box TestBox): secret keys of all 1s and all 2s, a nonce of all 4s and
// 64 bytes of 3s.
func TestNaClBoxVector(t *testing.T) {
	var sk1, sk2 [32]byte
	for i := range sk1 {
		sk1[i], sk2[i] = 1, 2
	}
	kp1, err := NewKeyPair(&sk1)
	if err != nil {
		t.Fatal(err)
	}
	kp2, err := NewKeyPair(&sk2)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewSharedKey(XSalsa20Poly1305, kp2, &kp1.Public, [8]byte{})
	if err != nil {
		t.Fatal(err)
	}
	var nonce [24]byte
	buf := make([]byte, sbox.Headroom+64)
	for i := range nonce {
		nonce[i] = 4
	}
	for i := range buf[sbox.Headroom:] {
		buf[sbox.Headroom+i] = 3
	}
	sbox.Seal(sbox.XSalsa20, buf, &nonce, &k.key)
	box := buf[sbox.Headroom-sbox.Overhead:]
	want := unhex(t, "78ea30b19d2341ebbdba54180f821eec265cf86312549bea8a37652a8bb94f07b78a73ed1708085e6ddd0e943bbdeb8755079a37eb31d86163ce241164a47629c0539f330b4914cd135b3855bc2a2dfc")
	if !bytes.Equal(box, want) {
		t.Fatalf("box: got %x, want %x", box, want)
	}
}

// sodium holds vectors printed by testdata/genvectors.c with libsodium
// 1.0.18 (crypto_box_beforenm, crypto_box_curve25519xchacha20poly1305_beforenm
// and their *_easy_afternm), an implementation independent of this package.
var sodium = struct {
	clientSK, clientPK, resolverSK, resolverPK string
	magic, clientNonce, resolverNonce          string
	query, answer                              string
	shared, queryPkt, responsePkt              [3]string // indexed by es-version
}{
	clientSK:      "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
	clientPK:      "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c",
	resolverSK:    "4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60",
	resolverPK:    "64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466",
	magic:         "7136666e76576a38",
	clientNonce:   "a0a1a2a3a4a5a6a7a8a9aaab",
	resolverNonce: "c0c1c2c3c4c5c6c7c8c9cacb",
	query:         "123401000001000000000000076578616d706c6503636f6d0000010001",
	answer:        "123481800001000100000000076578616d706c6503636f6d0000010001c00c0001000100000e100004c0000201",
	shared: [3]string{1: "f8d48c0771b2fab0580110626883f7671e7d0001a6823f3ad9e93d8ef177e8fc",
		2: "b42cc579311b0823571c28a78073e8c6cb08dba3ef93a4ca61f9023ae9ecaec0"},
	queryPkt: [3]string{
		1: "7136666e76576a3807a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7ca0a1a2a3a4a5a6a7a8a9aaabac7042a051cb90ba22ca23bfc026324e79c9fbfd02b44b7f3527402694f656964d818849b79909e764851c570427741453d81ba5a5c744bda28273d599d7724f0eec6f54e5c5319413a6e9a3a41889be8c0f3d87c0ae06ca8381049d7c12602f6f6a020561d392779f076521e35937f393eda094a50ec98721d0f979b24eb9e0cf2c7aadae42b34b24f60a416d2e8389f7ad23925e7fe1520fd992817e6bb23408e3c07faabe619e5b7c3b0626bb1758f8ac3567a0f008aea758e2957f3846ff0dd928054a1a822635e8097a97a950831bf1d270d7290fc941e4ffdebcc2d27cb0de2c4bc049bb7d472cb655921bc794c25ea8d5137bc164ec5a33a759d71d2318a4f55a24ad0d01536a6e3956d867b9",
		2: "7136666e76576a3807a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7ca0a1a2a3a4a5a6a7a8a9aaab560ce8efb0bf48d36161f9c6e40e104a99ab30d544d26eae1b51dafb315da3a5440818abe441b3f954fc40bcf50dfe2d4caff17392ccb61aa03453d781b0c69dfdfb5199d9c4d4c0ba5da87e35a929fe07b9a0c6add9ae86f2267a7cf0f6569655c14f25551399baac9fc2e8613db5451b96efc6512360cd85aae5e5e20b6f88c2f5f31db8bdadbf1dbb518f2060c86cbd25aaa03edb65a6db4bd5179c1d830a735019d44c492913e88d0f7a476453068953754f1e6984b4983a57872b6f96b4638e2a38874c053385d976266b0104a991aa638f224f8e37b6d4de5ebd73b0e1affcf1c75d43a09898bc398ad4500a6c60a916cc19acc53d6d227f24ae8c0577a68a3936ef4c1ee8dfb4ae8dc818392f",
	},
	responsePkt: [3]string{
		1: "7236666e76576a38a0a1a2a3a4a5a6a7a8a9aaabc0c1c2c3c4c5c6c7c8c9cacb51935257cf5008d7e35bedd79f57068a81b717cc39de24550afa27bfb178411da3ad1e722ebf1f2e14500a375c99ef408807a46aa8bfb854df9dbb7437881752ec3d75d09f6a24b3e39631b44c9992df91b0802aa9de1ec9c8840536b5588a3101718e2f1fb0e964947b610a546dd40b6390f992487e653d3a5f902bcf336461aa4e1d8d44fd76cd46bcadb2a49860a4",
		2: "7236666e76576a38a0a1a2a3a4a5a6a7a8a9aaabc0c1c2c3c4c5c6c7c8c9cacbf4f4033972dc7a255be2c6a212508aa3136456d21eda7e51f56e1ad84a538b7ac61fe0302ee7fc7caa17c8055b93ef3458d7a0186e12283f9d84b75d766714496bfcf060b81fd81e33f19dd7d0d6bdf893df2a15f10cfaf9c96b308f16c7cb07501abdf883566fdc24ff6a050dd8eaefb33ae174901facf37585255f49b030607d15c5ff79ed6ca950fef31df52bdf4a",
	},
}

// sodiumKeys returns the client and resolver side keys of the vectors.
func sodiumKeys(tb testing.TB, c Construction) (client, resolver *SharedKey) {
	tb.Helper()
	kp, err := NewKeyPair(key32(tb, sodium.clientSK))
	if err != nil {
		tb.Fatal(err)
	}
	if got := hex.EncodeToString(kp.Public[:]); got != sodium.clientPK {
		tb.Fatalf("client pk: got %s, want %s", got, sodium.clientPK)
	}
	magic := [8]byte(unhex(tb, sodium.magic))
	client, err = NewSharedKey(c, kp, key32(tb, sodium.resolverPK), magic)
	if err != nil {
		tb.Fatal(err)
	}
	h := QueryHeader{ClientMagic: magic, ClientPK: kp.Public}
	resolver, err = NewResolverKey(c, key32(tb, sodium.resolverSK), &h)
	if err != nil {
		tb.Fatal(err)
	}
	return client, resolver
}

func TestLibsodiumVectors(t *testing.T) {
	for _, c := range []Construction{XSalsa20Poly1305, XChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			client, resolver := sodiumKeys(t, c)
			if got := hex.EncodeToString(client.key[:]); got != sodium.shared[c] {
				t.Fatalf("shared key: got %s, want %s", got, sodium.shared[c])
			}
			if !client.Equal(resolver) {
				t.Fatal("client and resolver derive different keys")
			}
			cn := [12]byte(unhex(t, sodium.clientNonce))
			rn := [12]byte(unhex(t, sodium.resolverNonce))
			query, answer := unhex(t, sodium.query), unhex(t, sodium.answer)

			pkt, err := SealQuery(nil, query, client, &cn, 256)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, sodium.queryPkt[c]); !bytes.Equal(pkt, want) {
				t.Fatalf("query packet:\ngot  %x\nwant %x", pkt, want)
			}
			got, err := OpenQuery(nil, pkt, resolver)
			if err != nil || !bytes.Equal(got, query) {
				t.Fatalf("OpenQuery: got %x, %v; want %x", got, err, query)
			}

			resp, err := SealResponse(nil, answer, resolver, &cn, &rn, 128)
			if err != nil {
				t.Fatal(err)
			}
			want := unhex(t, sodium.responsePkt[c])
			if !bytes.Equal(resp, want) {
				t.Fatalf("response packet:\ngot  %x\nwant %x", resp, want)
			}
			got, err = OpenResponse(nil, want, client, &cn)
			if err != nil || !bytes.Equal(got, answer) {
				t.Fatalf("OpenResponse: got %x, %v; want %x", got, err, answer)
			}
		})
	}
}

// TestPaddingExample checks TCPPaddedLen against the example of
// DNSCRYPT-V2-PROTOCOL.txt, section 5: a 56-byte query may be padded with
// 8, 72, 136 or 200 bytes, and nothing else.
func TestPaddingExample(t *testing.T) {
	want := map[int]bool{64: true, 128: true, 192: true, 256: true}
	got := map[int]bool{}
	for r := range 256 {
		n := TCPPaddedLen(56, byte(r))
		if !want[n] {
			t.Fatalf("TCPPaddedLen(56, %d) = %d, not in the spec's example", r, n)
		}
		got[n] = true
	}
	if len(got) != len(want) {
		t.Fatalf("TCPPaddedLen(56, r) takes %v, want all of %v", got, want)
	}
	msg := bytes.Repeat([]byte{0xab}, 56)
	padded, err := Pad(nil, msg, 64)
	if err != nil {
		t.Fatal(err)
	}
	wantPad := []byte{0x80, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(padded[56:], wantPad) {
		t.Fatalf("padding: got %x, want %x", padded[56:], wantPad)
	}
}
