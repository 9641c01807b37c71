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
	"time"

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

var (
	userMu    sync.Mutex // one useradd or userdel of this process at a time
	userCount atomic.Int32
)

// testUser creates a system account (no home, no shell) for the test,
// named base-PID-N so that no two tests or test binaries share one, and
// deletes it, with its group, when the test ends: the host keeps no
// account of the tests. It needs root. Stop the account's processes first
// (cleanups registered after this call run before it).
func testUser(t *testing.T, base string) *user.User {
	t.Helper()
	requireRoot(t)
	name := fmt.Sprintf("%s-%d-%d", base, os.Getpid(), userCount.Add(1))
	if len(name) > 32 { // useradd's limit
		t.Fatalf("test user name %q is longer than 32 bytes", name)
	}
	if err := userCmd("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", name); err != nil {
		t.Fatalf("test user %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := userCmd("userdel", name); err != nil {
			t.Errorf("removing test user %s: %v", name, err)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("test user %s: %v", name, err)
	}
	return u
}

// userCmd runs useradd or userdel, again while another process (a test
// binary running at the same time) holds the lock of /etc/passwd.
func userCmd(name string, args ...string) error {
	userMu.Lock()
	defer userMu.Unlock()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err == nil {
			return nil
		}
		if !strings.Contains(string(out), "lock") || time.Now().After(deadline) {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	}
}

// asUser is a command prefix running a program in the namespace as u.
func asUser(ns string, u *user.User) []string {
	return []string{"ip", "netns", "exec", ns, "setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--clear-groups"}
}

// TestTestUserRemoved: an account testUser creates is gone, with its
// group, once its test has ended.
func TestTestUserRemoved(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) {
		u := testUser(t, "dnscrypt-test-gone")
		name = u.Username
		if _, err := user.LookupGroupId(u.Gid); err != nil {
			t.Errorf("group %s of %s: %v", u.Gid, name, err)
		}
	})
	if name == "" {
		return // skipped: not root
	}
	if _, err := user.Lookup(name); err == nil {
		t.Errorf("user %s still exists after its test", name)
	}
	if _, err := user.LookupGroup(name); err == nil {
		t.Errorf("group %s still exists after its test", name)
	}
}
