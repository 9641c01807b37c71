package labtest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/jedisct1/go-dnsstamps"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/upstream"
	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

// TestPinnedStamp: the stamps parse back into the upstream they describe.
func TestPinnedStamp(t *testing.T) {
	const hash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	pin := [32]byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	onion := strings.Repeat("a", 56) + ".onion"
	for _, tc := range []struct {
		proto dnsstamps.StampProtoType
		addr  string
		want  upstream.Spec
	}{
		{dnsstamps.StampProtoTypeTLS, "127.0.0.1:8458", upstream.Spec{Kind: upstream.KindTLS, Name: "backend.lab.test:8458",
			Addr: "127.0.0.1:8458", ServerName: "backend.lab.test"}},
		{dnsstamps.StampProtoTypeDoH, "127.0.0.1:8457", upstream.Spec{Kind: upstream.KindHTTPS, Name: "backend.lab.test:8457",
			Addr: "127.0.0.1:8457", ServerName: "backend.lab.test", Path: "/dns-query"}},
		{dnsstamps.StampProtoTypeTLS, onion + ":853", upstream.Spec{Kind: upstream.KindTLS, Name: onion,
			Addr: onion + ":853", ServerName: onion}},
		{dnsstamps.StampProtoTypeDoH, onion + ":443", upstream.Spec{Kind: upstream.KindHTTPS, Name: onion,
			Addr: onion + ":443", ServerName: onion, Path: "/dns-query"}},
		{dnsstamps.StampProtoTypeTLS, "resolver.lab.test:8458", upstream.Spec{Kind: upstream.KindTLS,
			Name: "resolver.lab.test:8458", Addr: "resolver.lab.test:8458", ServerName: "resolver.lab.test"}},
	} {
		s, err := PinnedStamp(tc.proto, tc.addr, "backend.lab.test", hash)
		if err != nil {
			t.Fatal(err)
		}
		st, err := stamps.Parse(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		got, err := upstream.FromStamp(st)
		tc.want.Pins = [][32]byte{pin}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v %s: %+v, %v; want %+v", tc.proto, tc.addr, got, err, tc.want)
		}
	}
	if _, err := PinnedStamp(dnsstamps.StampProtoTypeTLS, "127.0.0.1:853", "x", "00"); err == nil {
		t.Error("a short TBS hash was taken")
	}
	if _, err := PinnedStamp(dnsstamps.StampProtoTypeDNSCrypt, "127.0.0.1:853", "x", hash); err == nil {
		t.Error("a DNSCrypt stamp was made")
	}
}
