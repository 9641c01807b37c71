// Command fastresolver runs the in-process test DNSCrypt resolver of
// dnscrypttest as a process of its own, for tests/bench/load.sh: it caches
// shared keys and answers from a synthetic zone, so it is fast enough to
// keep the proxy busy, unlike the lab's dnsdist (an X25519 operation per
// query). It prints "ADDR PROVIDER-NAME PROVIDER-KEY-HEX STAMP" and runs
// until killed.
package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

func main() {
	es := dnscrypt.XSalsa20Poly1305
	if len(os.Args) > 1 && os.Args[1] == "es2" {
		es = dnscrypt.XChaCha20Poly1305
	}
	srv, err := dnscrypttest.Start(nil, dnscrypttest.CertSpec{Construction: es})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fastresolver:", err)
		os.Exit(1)
	}
	fmt.Println(srv.Addr, dnscrypttest.ProviderName, hex.EncodeToString(srv.ProviderKey), srv.Stamp())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	srv.Close()
}
