// Package stamps names resolvers: it reads and writes DNS stamps
// ("sdns://..."), and it understands what dnscrypt-proxy 1.x took instead:
// a resolver address, provider name and provider key on the command line
// (-r, -N, -k), or a name (-R) looked up in a resolvers list in CSV
// (-L). A small list of public DNSCrypt resolvers is built in.
//
// Stamps are decoded and encoded by [github.com/jedisct1/go-dnsstamps];
// [Parse] adds the checks that package leaves to callers, such as a 32-byte
// DNSCrypt provider key and an IP-literal address.
//
//	st, err := stamps.Parse("sdns://AQcAAAAAAAAADjIxMi40Ny4yMjguMTM2IOgBuE6mBr-wusDOQ0RbsV66ZLAvo8SqMa4QY2oHkDJNHzIuZG5zY3J5cHQtY2VydC5mci5kbnNjcnlwdC5vcmc")
//	// st.ServerAddrStr == "212.47.228.136:443"
//	// st.ProviderName == "2.dnscrypt-cert.fr.dnscrypt.org"
//
// The same resolver from 1.x command-line values:
//
//	pk, err := stamps.ParseProviderKey("E801:B84E:A606:BFB0:BAC0:CE43:445B:B15E:BA64:B02F:A3C4:AA31:AE10:636A:0790:324D")
//	st, err := stamps.NewDNSCrypt("212.47.228.136", "2.dnscrypt-cert.fr.dnscrypt.org", pk, 0)
//
// Or from a 1.x resolvers list:
//
//	list, err := stamps.ParseCSV(f) // good rows, and the bad ones joined in err
//	res, err := stamps.Lookup(list, "dnscrypt.org-fr")
//	// res.Stamp is the stamp; stamps.Random(list, nil) is "-R random",
//	// stamps.RandomN(list, 3, nil) three distinct resolvers by its rules.
//
// The package does no network I/O and does not log. Its errors wrap the
// sentinels in errors.go; see [RowError] for bad rows of a list.
//
// References: DNS Stamps specification (https://dnscrypt.info/stamps-specifications);
// dnscrypt-proxy 1.9.5 (src/proxy/options.c, minicsv.c) for the command
// line and the list format.
package stamps
