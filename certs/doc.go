// Package certs handles DNSCrypt v2 resolver certificates: it parses and
// verifies them ([Verify], pure, with the time as a parameter), chooses
// among them ([Best], [Select]), creates them for test resolvers
// ([Create]), fetches them with one plain TXT query ([Fetch] over an
// [Exchanger]), and keeps the one in use fresh ([Refresher]).
//
// A certificate (all integers big-endian; the Ed25519 signature by the
// provider key covers bytes 72 to the end, extensions included):
//
//	0   "DNSC"      4   es-version   6   minor version (0)   8   signature (64)
//	72  resolver public key (32)     104 client magic (8)    112 serial
//	116 ts-start    120 ts-end (inclusive)                   124 extensions
//
// A client fetches the certificates once, then keeps them fresh:
//
//	pk := ed25519.PublicKey(providerKey) // from the stamp or --provider-key
//	ex := &certs.DialExchanger{Dialer: socksDialer} // Tor; or &certs.UDPWithTCPFallback{}
//	r := &certs.Refresher{
//		Fetch: func(ctx context.Context) ([]*certs.Cert, error) {
//			return certs.Fetch(ctx, ex, "192.0.2.1:443", "2.dnscrypt-cert.example.com", pk, time.Now(), false)
//		},
//		Logger:   logger,
//		OnChange: func(c *certs.Cert) { /* optional: told of every switch */ },
//	}
//	if err := r.Init(ctx); err != nil { ... }
//	go r.Run(ctx)
//	cert := r.Current() // for each query
//
// Reference: DNSCrypt v2 protocol specification (DNSCRYPT-V2-PROTOCOL.txt),
// "Certificates".
package certs
