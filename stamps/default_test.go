package stamps

import (
	"bytes"
	"crypto/ed25519"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jedisct1/go-dnsstamps"
)

func TestDefaultList(t *testing.T) {
	list, err := ParseCSV(bytes.NewReader(defaultList))
	if err != nil {
		t.Fatalf("embedded list: %v", err)
	}
	if len(list) < 5 || len(list) > 15 {
		t.Errorf("got %d resolvers, want 5 to 15", len(list))
	}
	if !reflect.DeepEqual(Default(), list) {
		t.Error("Default() differs from the parsed embedded list")
	}
	names := map[string]bool{}
	for _, res := range list {
		if names[res.Name] {
			t.Errorf("%s: duplicate name", res.Name)
		}
		names[res.Name] = true
		st := res.Stamp
		if st.Proto != dnsstamps.StampProtoTypeDNSCrypt {
			// The onion services: DoH and DoT by name, through Tor.
			if st.Proto != dnsstamps.StampProtoTypeDoH && st.Proto != dnsstamps.StampProtoTypeTLS ||
				st.ServerAddrStr != "" || !strings.HasSuffix(res.Address, ".onion:443") && !strings.HasSuffix(res.Address, ".onion:853") {
				t.Errorf("%s: %v stamp %+v at %q, want DoH or DoT of an onion service", res.Name, st.Proto, st, res.Address)
			}
			continue
		}
		if len(st.ServerPk) != ed25519.PublicKeySize {
			t.Errorf("%s: key of %d bytes, want 32", res.Name, len(st.ServerPk))
		}
		if ap, err := netip.ParseAddrPort(st.ServerAddrStr); err != nil || !ap.Addr().Is4() {
			t.Errorf("%s: address %q, want IPv4:port", res.Name, st.ServerAddrStr)
		}
		if !res.DNSSEC || !res.NoLogs {
			t.Errorf("%s: DNSSEC %v, no logs %v; want both", res.Name, res.DNSSEC, res.NoLogs)
		}
		// The stamp survives Format and Parse.
		back, err := Parse(Format(st))
		if err != nil || !reflect.DeepEqual(back, st) {
			t.Errorf("%s: round trip gave %+v, %v", res.Name, back, err)
		}
	}
	def, err := Lookup(list, DefaultName)
	if err != nil {
		t.Fatalf("DefaultName %q: %v", DefaultName, err)
	}
	if def.Stamp.ServerAddrStr != "212.47.228.136:443" || def.Stamp.ProviderName != "2.dnscrypt-cert.fr.dnscrypt.org" {
		t.Errorf("default resolver: got %+v", def.Stamp)
	}
	if _, err := Random(list, nil); err != nil {
		t.Errorf("Random: %v", err)
	}
}

// TestDefaultListMatchesPublishedStamps checks the 1.x columns of every
// embedded row against the stamp published for it, kept in the extra
// "DNS stamp" column.
func TestDefaultListMatchesPublishedStamps(t *testing.T) {
	list, err := ParseCSV(bytes.NewReader(defaultList))
	if err != nil {
		t.Fatal(err)
	}
	p := csvParser{data: defaultList, line: 1}
	header, _, err := p.record()
	if err != nil {
		t.Fatal(err)
	}
	header = slices.Clone(header)
	nameCol, stampCol := -1, -1
	for i, h := range header {
		switch h {
		case "Name":
			nameCol = i
		case "DNS stamp":
			stampCol = i
		}
	}
	if nameCol < 0 || stampCol < 0 {
		t.Fatalf("header %q lacks Name or DNS stamp", header)
	}
	seen := 0
	for !p.done() {
		row, line, err := p.record()
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		if len(row) <= stampCol {
			t.Errorf("line %d: no stamp", line)
			continue
		}
		res, err := Lookup(list, row[nameCol])
		if err != nil {
			t.Errorf("line %d: %v", line, err)
			continue
		}
		published, err := Parse(row[stampCol])
		if err != nil {
			t.Errorf("%s: published stamp: %v", res.Name, err)
			continue
		}
		// Selection: all published as DNSSEC, no logs, no filter.
		const want = dnsstamps.ServerInformalPropertyDNSSEC | dnsstamps.ServerInformalPropertyNoLog | dnsstamps.ServerInformalPropertyNoFilter
		if published.Props != want {
			t.Errorf("%s: published properties %x, want %x", res.Name, published.Props, want)
		}
		if published.Proto == dnsstamps.StampProtoTypeDNSCrypt {
			published.Props &^= dnsstamps.ServerInformalPropertyNoFilter // no 1.x column for it
		}
		if !reflect.DeepEqual(res.Stamp, published) {
			t.Errorf("%s: columns give %+v, published stamp is %+v", res.Name, res.Stamp, published)
		}
		seen++
	}
	if seen != len(list) {
		t.Errorf("checked %d rows, list has %d", seen, len(list))
	}
}

func TestDefaultReturnsCopies(t *testing.T) {
	a := Default()
	a[0].Name = "changed"
	a[0].Stamp.ServerPk[0] ^= 0xff
	b := Default()
	if b[0].Name == "changed" {
		t.Error("Default shares its slice with callers")
	}
	if b[0].Stamp.ServerPk[0] == a[0].Stamp.ServerPk[0] {
		t.Error("Default shares its keys with callers")
	}
}
