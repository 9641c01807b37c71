package upstream

import (
	"crypto/sha256"
	"reflect"
	"strings"
	"testing"

	"github.com/jedisct1/go-dnsstamps"

	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

func stampOf(t *testing.T, st dnsstamps.ServerStamp) dnsstamps.ServerStamp {
	t.Helper()
	s := st.String()
	parsed, err := stamps.Parse(s)
	if err != nil {
		t.Fatalf("stamps.Parse(%s): %v", s, err)
	}
	return parsed
}

func TestFromStamp(t *testing.T) {
	pin := sha256.Sum256([]byte("tbs"))
	pk := make([]byte, 32)
	for _, tc := range []struct {
		name  string
		stamp dnsstamps.ServerStamp
		want  Spec
	}{
		{"DNSCrypt", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDNSCrypt, ServerAddrStr: "192.0.2.1:8443",
			ServerPk: pk, ProviderName: "2.dnscrypt-cert.example"},
			Spec{Kind: KindDNSCrypt, Addr: "192.0.2.1:8443", ProviderName: "2.dnscrypt-cert.example", ProviderKey: pk}},
		{"plain", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypePlain, ServerAddrStr: "192.0.2.1"},
			Spec{Kind: KindTCP, Addr: "192.0.2.1:53"}},
		// The lab's form: the bare IP, the port with the host name.
		{"DoT, port with the name", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeTLS, ServerAddrStr: "127.0.0.1",
			Hashes: [][]byte{pin[:]}, ProviderName: "dns.lab.test:8456"},
			Spec{Kind: KindTLS, Name: "dns.lab.test:8456", Addr: "127.0.0.1:8456", ServerName: "dns.lab.test", Pins: [][32]byte{pin}}},
		{"DoT, port with the address", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeTLS, ServerAddrStr: "[2001:db8::1]:8853",
			ProviderName: "dns.example"},
			Spec{Kind: KindTLS, Name: "dns.example", Addr: "[2001:db8::1]:8853", ServerName: "dns.example"}},
		{"DoH", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDoH, ServerAddrStr: "127.0.0.1",
			Hashes: [][]byte{pin[:]}, ProviderName: "dns.lab.test:8457", Path: "/dns-query"},
			Spec{Kind: KindHTTPS, Name: "dns.lab.test:8457", Addr: "127.0.0.1:8457", ServerName: "dns.lab.test",
				Pins: [][32]byte{pin}, Path: "/dns-query"}},
		// An onion service: no address, the name goes to Tor.
		{"DoH by name only", dnsstamps.ServerStamp{Proto: dnsstamps.StampProtoTypeDoH,
			ProviderName: "dns4torpnlfs2ifuz2s2yf3fc7rdmsbhm6rw75euj35pac6ap25zgqad.onion", Path: "/dns-query"},
			Spec{Kind: KindHTTPS, Name: "dns4torpnlfs2ifuz2s2yf3fc7rdmsbhm6rw75euj35pac6ap25zgqad.onion",
				Addr:       "dns4torpnlfs2ifuz2s2yf3fc7rdmsbhm6rw75euj35pac6ap25zgqad.onion:443",
				ServerName: "dns4torpnlfs2ifuz2s2yf3fc7rdmsbhm6rw75euj35pac6ap25zgqad.onion", Path: "/dns-query"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromStamp(stampOf(t, tc.stamp))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
			// A name needs a proxy; an IP address works both ways.
			byName := !strings.HasPrefix(tc.want.Addr, "1") && !strings.HasPrefix(tc.want.Addr, "[")
			if err := got.Check(false); (err == nil) == byName {
				t.Fatalf("Check(direct) = %v for %s", err, got.Addr)
			}
		})
	}
	// Unsupported protocols are errors.
	for _, st := range []dnsstamps.ServerStamp{
		{Proto: dnsstamps.StampProtoTypeDoQ, ServerAddrStr: "192.0.2.1", ProviderName: "dns.example"},
		{Proto: dnsstamps.StampProtoTypeODoHTarget, ProviderName: "dns.example", Path: "/dns-query"},
	} {
		if s, err := FromStamp(stampOf(t, st)); err == nil {
			t.Errorf("FromStamp(%v) = %+v, want an error", st, s)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
	}{
		{"tcp://192.0.2.1", Spec{Kind: KindTCP, Name: "tcp://192.0.2.1", Addr: "192.0.2.1:53"}},
		{"tcp://[2001:db8::1]:5353", Spec{Kind: KindTCP, Name: "tcp://[2001:db8::1]:5353", Addr: "[2001:db8::1]:5353"}},
		{"tls://dns.example", Spec{Kind: KindTLS, Name: "tls://dns.example", Addr: "dns.example:853", ServerName: "dns.example"}},
		{"tls://1.1.1.1:8853", Spec{Kind: KindTLS, Name: "tls://1.1.1.1:8853", Addr: "1.1.1.1:8853", ServerName: "1.1.1.1"}},
		{"https://abc.onion/dns-query", Spec{Kind: KindHTTPS, Name: "https://abc.onion/dns-query", Addr: "abc.onion:443",
			ServerName: "abc.onion", Path: "/dns-query"}},
		{"HTTPS://Dns.Example:8443", Spec{Kind: KindHTTPS, Name: "HTTPS://Dns.Example:8443", Addr: "dns.example:8443",
			ServerName: "dns.example", Path: "/dns-query"}},
	} {
		got, err := ParseURL(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseURL(%q) = %+v, %v\nwant %+v", tc.in, got, err, tc.want)
		}
		if !IsURL(tc.in) {
			t.Errorf("IsURL(%q) = false", tc.in)
		}
	}
	for _, bad := range []string{"udp://192.0.2.1", "tcp://", "tls://bad host", "tls://x:0", "tls://x:65536", "tcp://x/path",
		"https://u:p@x/", "https://x/?q", "tls://[fe80::1%eth0]", "tls://-x.example"} {
		if s, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) = %+v, want an error", bad, s)
		}
	}
	for _, not := range []string{"192.0.2.1:443", "sdns://x", "tcp:/x"} {
		if IsURL(not) {
			t.Errorf("IsURL(%q) = true", not)
		}
	}
}

// FuzzForms: ParseURL and FromStamp never panic, and what they return
// passes Check through a proxy.
func FuzzForms(f *testing.F) {
	for _, s := range []string{"tcp://192.0.2.1", "tls://dns.example:853", "https://x.onion/dns-query",
		"sdns://AwcAAAAAAAAACTEyNy4wLjAuMQAREGRucy5sYWIudGVzdDo4NDU2",
		"sdns://AgcAAAAAAAAACTEyNy4wLjAuMQAREGRucy5sYWIudGVzdDo4NDU3Ci9kbnMtcXVlcnk"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if spec, err := ParseURL(s); err == nil {
			if err := spec.Check(true); err != nil {
				t.Fatalf("ParseURL(%q) = %+v, which Check refuses: %v", s, spec, err)
			}
		}
		if st, err := stamps.Parse(s); err == nil {
			if spec, err := FromStamp(st); err == nil {
				if err := spec.Check(true); err != nil {
					t.Fatalf("FromStamp(%q) = %+v, which Check refuses: %v", s, spec, err)
				}
			}
		}
	})
}
