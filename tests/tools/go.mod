module github.com/tor-dnscrypt/dnscrypt-proxy/tests/tools

go 1.24.1

require (
	github.com/AdguardTeam/golibs v0.32.7 // indirect
	github.com/ameshkov/dnscrypt/v2 v2.4.0 // indirect
	github.com/ameshkov/dnsstamps v1.0.3 // indirect
	github.com/jessevdk/go-flags v1.6.1 // indirect
	github.com/miekg/dns v1.1.65 // indirect
	golang.org/x/crypto v0.37.0 // indirect
	golang.org/x/exp v0.0.0-20250305212735-054e65f0b394 // indirect
	golang.org/x/mod v0.24.0 // indirect
	golang.org/x/net v0.38.0 // indirect
	golang.org/x/sync v0.13.0 // indirect
	golang.org/x/sys v0.32.0 // indirect
	golang.org/x/tools v0.31.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

tool github.com/ameshkov/dnscrypt/v2/cmd
