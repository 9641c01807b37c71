// Package dnscrypt implements the wire format of the DNSCrypt v2 protocol:
// key agreement for both encryption systems, sealing and opening of queries
// and responses, the ISO/IEC 7816-4 padding they carry, and the rule for
// provider names, the name of the certificate query ([CheckProviderName]).
//
// It does no I/O and never logs. Nonces and padded lengths are parameters,
// never generated inside, so every function is deterministic and testable
// with known answers; callers draw nonces from crypto/rand.
//
// A client computes one [SharedKey] per (client key pair, resolver
// certificate), then for every query:
//
//	var nonce [dnscrypt.HalfNonceSize]byte
//	rand.Read(nonce[:])
//	pkt, err := dnscrypt.SealQuery(buf[:0], query, key, &nonce, dnscrypt.UDPPaddedLen(len(query), minLen))
//	// ... send pkt, receive resp ...
//	answer, err := dnscrypt.OpenResponse(out[:0], resp, key, &nonce)
//
// The resolver side ([ParseQueryHeader], [OpenQuery], [SealResponse]) exists
// for in-process test servers.
//
// Reference: DNSCrypt v2 protocol specification (DNSCRYPT-V2-PROTOCOL.txt).
package dnscrypt
