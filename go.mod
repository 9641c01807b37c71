module github.com/tor-dnscrypt/dnscrypt-proxy

go 1.26.0

require (
	github.com/jedisct1/go-dnsstamps v0.0.0-20251112173516-191fc465df31
	github.com/miekg/dns v1.1.73
	github.com/spf13/pflag v1.0.10
	golang.org/x/crypto v0.58.0
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
)
