package tests

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tor-dnscrypt/dnscrypt-proxy/tests/labtest"
)

// requireRoot skips a test that needs root, or fails it in CI
// (labtest.InCI).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		labtest.Require(t, "root", fmt.Errorf("running as uid %d", os.Geteuid()))
	}
}

// run runs a command that must succeed.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var netnsCount atomic.Int32

// newNetns creates a network namespace with its loopback up, deleted when
// the test ends. Tests touch only namespaces they create.
func newNetns(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	name := fmt.Sprintf("dnsc-test-%d-%d", os.Getpid(), netnsCount.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// inNetns runs f on a thread switched into the namespace, so sockets f
// creates live there (goroutines f starts may use them from anywhere).
func inNetns(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns %s: %v", name, err)
	}
	f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Stay locked: the thread dies with this goroutine.
		t.Fatalf("setns back: %v", err)
	}
	runtime.UnlockOSThread()
}

var userMu sync.Mutex

// testUser returns a system account of the tests, creating it (no home,
// no shell) if missing. It needs root.
func testUser(t *testing.T, name string) *user.User {
	t.Helper()
	requireRoot(t)
	userMu.Lock()
	defer userMu.Unlock()
	if u, err := user.Lookup(name); err == nil {
		return u
	}
	// Another test binary may create it at the same time: only the lookup
	// afterwards counts.
	out, _ := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", name).CombinedOutput()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("test user %s: %v (useradd: %s)", name, err, out)
	}
	return u
}

// asUser is a command prefix running a program in the namespace as u.
func asUser(ns string, u *user.User) []string {
	return []string{"ip", "netns", "exec", ns, "setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--clear-groups"}
}
