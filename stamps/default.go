package stamps

import (
	"bytes"
	_ "embed"
	"sync"
)

// DefaultName is the resolver the proxy uses when given none: Scaleway
// Paris, maintained by the DNSCrypt project's author, DNSSEC-validating,
// non-logging and non-filtering. It is the oldest entry of the embedded
// list: the same address and provider key were already in the 1.x list,
// as dnscrypt.org-fr.
const DefaultName = "scaleway-fr"

// defaultList is a small 1.x-format list of public DNSCrypt resolvers with
// IPv4 addresses, copied from the DNSCrypt project's public resolver list
// (DNSCrypt/dnscrypt-resolvers, v3/public-resolvers.md). Its extra
// "DNS stamp" column, which 1.x and ParseCSV ignore, holds each published
// stamp; tests check the other columns against it.
//
//go:embed default-resolvers.csv
var defaultList []byte

var parseDefault = sync.OnceValues(func() ([]Resolver, error) {
	return ParseCSV(bytes.NewReader(defaultList))
})

// Default returns the embedded resolvers list, which contains
// [DefaultName]. The caller may modify the result.
func Default() []Resolver {
	list, _ := parseDefault() // tests guarantee there is no error
	out := make([]Resolver, len(list))
	for i, res := range list {
		res.Stamp.ServerPk = bytes.Clone(res.Stamp.ServerPk)
		out[i] = res
	}
	return out
}
