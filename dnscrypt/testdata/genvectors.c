/*
 * genvectors.c - prints the known-answer vectors of vectors_test.go, made
 * with libsodium (an implementation independent of this package).
 *
 *   cc -o /tmp/genvectors genvectors.c -lsodium && /tmp/genvectors
 *
 * Keys, nonces and messages are fixed byte patterns, so the output is
 * reproducible. Packets follow the DNSCrypt v2 layouts:
 *   query    = client-magic | client-pk | client-nonce(12) | box(query | pad)
 *              with the box nonce client-nonce | 12 NUL bytes
 *   response = "r6fnvWj8" | client-nonce(12) | resolver-nonce(12) | box(answer | pad)
 * box = *_easy_afternm: Poly1305 tag, then ciphertext.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

static void hex(const char *name, const unsigned char *b, size_t n) {
	printf("%s: ", name);
	for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
	printf("\n");
}

static void pattern(unsigned char *b, size_t n, unsigned char start) {
	for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(start + i);
}

/* A 29-byte DNS query for "example.com. A" with ID 0x1234, RD set. */
static const unsigned char query[] = {
	0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
	0x00, 0x01, 0x00, 0x01,
};
/* The answer: same header with QR RD RA, ANCOUNT 1, A 192.0.2.1. */
static const unsigned char answer[] = {
	0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
	0x00, 0x01, 0x00, 0x01,
	0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x04,
	192, 0, 2, 1,
};

static size_t pad(unsigned char *out, const unsigned char *m, size_t mlen, size_t padded) {
	memcpy(out, m, mlen);
	out[mlen] = 0x80;
	memset(out + mlen + 1, 0, padded - mlen - 1);
	return padded;
}

int main(void) {
	unsigned char csk[32], cpk[32], rsk[32], rpk[32];
	unsigned char cnonce[12], rnonce[12], nonce[24];
	unsigned char magic[8] = {'q', '6', 'f', 'n', 'v', 'W', 'j', '8'};
	unsigned char k1[32], k2[32];
	unsigned char plain[512], pkt[1024];

	if (sodium_init() < 0) return 1;
	pattern(csk, 32, 0x01);
	pattern(rsk, 32, 0x41);
	pattern(cnonce, 12, 0xa0);
	pattern(rnonce, 12, 0xc0);
	crypto_scalarmult_base(cpk, csk);
	crypto_scalarmult_base(rpk, rsk);
	hex("client_sk", csk, 32);
	hex("client_pk", cpk, 32);
	hex("resolver_sk", rsk, 32);
	hex("resolver_pk", rpk, 32);
	hex("client_magic", magic, 8);
	hex("client_nonce", cnonce, 12);
	hex("resolver_nonce", rnonce, 12);
	hex("query", query, sizeof query);
	hex("answer", answer, sizeof answer);

	if (crypto_box_beforenm(k1, rpk, csk) != 0) return 1;
	if (crypto_box_curve25519xchacha20poly1305_beforenm(k2, rpk, csk) != 0) return 1;
	hex("shared_es1", k1, 32);
	hex("shared_es2", k2, 32);

	for (int es = 1; es <= 2; es++) {
		const unsigned char *k = es == 1 ? k1 : k2;
		char name[64];
		/* query padded to 256 bytes (UDP minimum) */
		size_t plen = pad(plain, query, sizeof query, 256);
		memcpy(nonce, cnonce, 12);
		memset(nonce + 12, 0, 12);
		memcpy(pkt, magic, 8);
		memcpy(pkt + 8, cpk, 32);
		memcpy(pkt + 40, cnonce, 12);
		if (es == 1)
			crypto_box_easy_afternm(pkt + 52, plain, plen, nonce, k);
		else
			crypto_box_curve25519xchacha20poly1305_easy_afternm(pkt + 52, plain, plen, nonce, k);
		snprintf(name, sizeof name, "query_es%d", es);
		hex(name, pkt, 52 + 16 + plen);

		/* response padded to 128 bytes */
		plen = pad(plain, answer, sizeof answer, 128);
		memcpy(nonce, cnonce, 12);
		memcpy(nonce + 12, rnonce, 12);
		memcpy(pkt, "r6fnvWj8", 8);
		memcpy(pkt + 8, nonce, 24);
		if (es == 1)
			crypto_box_easy_afternm(pkt + 32, plain, plen, nonce, k);
		else
			crypto_box_curve25519xchacha20poly1305_easy_afternm(pkt + 32, plain, plen, nonce, k);
		snprintf(name, sizeof name, "response_es%d", es);
		hex(name, pkt, 32 + 16 + plen);
	}
	printf("libsodium: %s\n", sodium_version_string());
	return 0;
}
