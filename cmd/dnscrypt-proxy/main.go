// Command dnscrypt-proxy is a DNSCrypt v2 client proxy, a drop-in
// replacement for dnscrypt-proxy 1.x that can also send everything
// through Tor. Run "dnscrypt-proxy --help" for the options.
package main

import (
	"os"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
