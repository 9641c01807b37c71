// Package dnscrypttest runs an in-process DNSCrypt v2 resolver for tests,
// as net/http/httptest runs HTTP servers: UDP and TCP on 127.0.0.1, a fresh
// provider key, certificates made on the fly, and a dns.Handler that answers
// the decrypted queries.
//
//	srv := dnscrypttest.NewServer(t, nil) // nil: the Zone handler
//	stamp := srv.Stamp()                  // sdns://... for the client under test
//	srv.SetFaults(dnscrypttest.Faults{WrongNonce: true})
//
// The resolver can misbehave on purpose (see [Faults]) and serve any set of
// certificates, valid or not (see [CertSpec] and [Server.SetCerts]). It
// records the clear header of every query it receives ([Server.Queries]),
// so tests can check nonces, client keys and transports.
package dnscrypttest
