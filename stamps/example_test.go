package stamps_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

func ExampleParse() {
	st, err := stamps.Parse("sdns://AQcAAAAAAAAADjIxMi40Ny4yMjguMTM2IOgBuE6mBr-wusDOQ0RbsV66ZLAvo8SqMa4QY2oHkDJNHzIuZG5zY3J5cHQtY2VydC5mci5kbnNjcnlwdC5vcmc")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.Proto.String())
	fmt.Println(st.ServerAddrStr)
	fmt.Println(st.ProviderName)
	fmt.Println(certs.Fingerprint(st.ServerPk))
	// Output:
	// DNSCrypt
	// 212.47.228.136:443
	// 2.dnscrypt-cert.fr.dnscrypt.org
	// E801:B84E:A606:BFB0:BAC0:CE43:445B:B15E:BA64:B02F:A3C4:AA31:AE10:636A:0790:324D
}

func ExampleNewDNSCrypt() {
	// dnscrypt-proxy --resolver-address=212.47.228.136 \
	//   --provider-name=2.dnscrypt-cert.fr.dnscrypt.org --provider-key=E801:...:324D
	pk, err := stamps.ParseProviderKey("E801:B84E:A606:BFB0:BAC0:CE43:445B:B15E:BA64:B02F:A3C4:AA31:AE10:636A:0790:324D")
	if err != nil {
		fmt.Println(err)
		return
	}
	st, err := stamps.NewDNSCrypt("212.47.228.136", "2.dnscrypt-cert.fr.dnscrypt.org", pk, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.ServerAddrStr)
	fmt.Println(stamps.Format(st))
	// Output:
	// 212.47.228.136:443
	// sdns://AQAAAAAAAAAADjIxMi40Ny4yMjguMTM2IOgBuE6mBr-wusDOQ0RbsV66ZLAvo8SqMa4QY2oHkDJNHzIuZG5zY3J5cHQtY2VydC5mci5kbnNjcnlwdC5vcmc
}

func ExampleNormalizeAddr() {
	for _, a := range []string{"192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]:8443", "resolver.example.com"} {
		addr, err := stamps.NormalizeAddr(a, 443)
		fmt.Println(addr, err)
	}
	// Output:
	// 192.0.2.1:443 <nil>
	// 192.0.2.1:5353 <nil>
	// [2001:db8::1]:443 <nil>
	// [2001:db8::1]:8443 <nil>
	//  stamps: invalid address: "resolver.example.com" is not an IP address
}

func ExampleParseCSV() {
	const list = `Name,Full name,Description,Location,Coordinates,URL,Version,DNSSEC validation,No logs,Namecoin,Resolver address,Provider name,Provider public key,Provider public key TXT record
dnscrypt.org-fr,DNSCrypt.org France,"DNSSEC, non-logged, uncensored","Paris, France",,,2,yes,yes,yes,212.47.228.136,2.dnscrypt-cert.fr.dnscrypt.org,E801:B84E:A606:BFB0:BAC0:CE43:445B:B15E:BA64:B02F:A3C4:AA31:AE10:636A:0790:324D,pubkey.fr.dnscrypt.org
broken,Broken,Key too short,,,,1,yes,yes,no,192.0.2.1,2.dnscrypt-cert.example.com,E801:B84E,
`
	resolvers, err := stamps.ParseCSV(strings.NewReader(list))
	var bad *stamps.RowError
	if errors.As(err, &bad) {
		fmt.Println("skipped:", bad)
	}
	res, err := stamps.Lookup(resolvers, "DNSCRYPT.ORG-FR")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Name, res.Location, res.DNSSEC, res.Stamp.ServerAddrStr)
	// Output:
	// skipped: line 3: resolver "broken": stamps: invalid provider key: 4 bytes, want 32
	// dnscrypt.org-fr Paris, France true 212.47.228.136:443
}

func ExampleDefault() {
	res, err := stamps.Lookup(stamps.Default(), stamps.DefaultName)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Name, res.Stamp.ServerAddrStr, res.Stamp.ProviderName)
	// Output:
	// scaleway-fr 212.47.228.136:443 2.dnscrypt-cert.fr.dnscrypt.org
}
