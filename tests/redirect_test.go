package tests

import (
	"os/user"
	"slices"
	"strings"
	"testing"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

// TestPerUserRedirect: in a network namespace of its own, iptables sends
// one user's port-53 queries to the proxy on --local-port=5800 (the Whonix
// recipe); another user's queries do not reach it.
func TestPerUserRedirect(t *testing.T) {
	ns := newNetns(t)
	var srv *dnscrypttest.Server
	inNetns(t, ns, func() { srv = dnscrypttest.NewServer(t, nil) })
	startProxyCmd(t, []string{"ip", "netns", "exec", ns}, append([]string{"--local-port=5800"}, resolverArgs(srv)...)...)

	redirected := testUser(t, "dnscrypt-test-redir")
	other := testUser(t, "dnscrypt-test-other")
	for _, proto := range []string{"udp", "tcp"} {
		run(t, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", proto, "--dport", "53",
			"-m", "owner", "--uid-owner", redirected.Uid, "-j", "REDIRECT", "--to-ports", "5800")
	}

	for _, transport := range []string{"+notcp", "+tcp"} {
		r := runDigCmd(t, asUser(ns, redirected), "dig", "@127.0.0.1", transport, "www.example", "A")
		if r.Status != "NOERROR" || !slices.Equal(r.Answer, []string{"www.example.\t0\tIN\tA\t192.0.2.1"}) {
			t.Fatalf("redirected user %s: %s %v\n%s", transport, r.Status, r.Answer, r.Out)
		}
	}
	seen := len(srv.Queries())
	if seen != 2 {
		t.Fatalf("the resolver saw %d queries, want 2", seen)
	}
	for _, who := range []struct {
		name string
		u    *user.User
	}{{"other user", other}, {"root", &user.User{Username: "root", Uid: "0", Gid: "0"}}} {
		for _, transport := range []string{"+notcp", "+tcp"} {
			r := runDigCmd(t, asUser(ns, who.u), "dig", "@127.0.0.1", transport, "+time=1", "www.example", "A")
			if r.Status != "" || !strings.Contains(r.Out, "refused") && !strings.Contains(r.Out, "timed out") {
				t.Fatalf("%s %s reached a DNS server:\n%s", who.name, transport, r.Out)
			}
		}
	}
	if n := len(srv.Queries()); n != seen {
		t.Fatalf("queries of non-redirected users reached the resolver (%d, want %d)", n, seen)
	}
}
