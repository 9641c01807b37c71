package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/proxy"
)

func TestPlanPrivateDomainsAndRebinding(t *testing.T) {
	p := plan(t, "--private-domain=corp.internal,lab.test", "--private-domain=10.in-addr.arpa.")
	if want := []string{"corp.internal", "lab.test", "10.in-addr.arpa."}; !slices.Equal(p.Proxy.PrivateDomains, want) {
		t.Fatalf("private domains %q, want %q", p.Proxy.PrivateDomains, want)
	}
	for _, tc := range []struct {
		args []string
		want proxy.Toggle
	}{
		{nil, proxy.Auto},
		{[]string{"--tor"}, proxy.Auto},
		{[]string{"--tor", "--no-rebind-protection"}, proxy.Off},
		{[]string{"--tor", "--rebind-protection=no"}, proxy.Off},
		{[]string{"--rebind-protection"}, proxy.On},
	} {
		if got := plan(t, tc.args...).Proxy.FilterInternal; got != tc.want {
			t.Errorf("%q: FilterInternal %v, want %v", tc.args, got, tc.want)
		}
	}
	for _, bad := range []string{"--private-domain=", "--private-domain=a..b", "--private-domain=ok.test,bad domain"} {
		_, err := ParseArgs([]string{bad})
		if err == nil || !strings.Contains(err.Error(), "Invalid private domain") {
			t.Errorf("%s: %v, want an invalid private domain error", bad, err)
		}
	}
}

func TestConfigPrivateDomains(t *testing.T) {
	args, err := ParseConfig(strings.NewReader("PrivateDomain lab.test\nPrivateDomain corp.internal\nRebindProtection no\n"), "x.conf", nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseArgs(args)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.PrivateDomains, []string{"lab.test", "corp.internal"}) || !o.Given("rebind-protection") || o.RebindProtection {
		t.Fatalf("from %q: %q, rebind protection %v (given %v)", args, o.PrivateDomains, o.RebindProtection, o.Given("rebind-protection"))
	}
}

// TestPrivateDomainsFileAndOptions: --private-domain on the command line
// replaces the file's PrivateDomain lines, as every option does.
func TestPrivateDomainsFileAndOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.conf")
	if err := os.WriteFile(path, []byte("PrivateDomain lab.test\nPrivateDomain corp.internal\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := Parse([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.PrivateDomains, []string{"lab.test", "corp.internal"}) {
		t.Fatalf("file alone: %q", o.PrivateDomains)
	}
	o, err = Parse([]string{"--private-domain=home.example", path})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.PrivateDomains, []string{"home.example"}) {
		t.Fatalf("file and option: %q, want the option's alone", o.PrivateDomains)
	}
}
