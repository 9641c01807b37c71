package labtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// goServerPkg is the package of the second DNSCrypt server, pinned in
// tests/tools/go.mod.
const goServerPkg = "github.com/ameshkov/dnscrypt/v2/cmd"

// buildTimeout bounds one build of the Go server, downloads included.
const buildTimeout = 10 * time.Minute

var buildMu sync.Mutex

// GoServerBinary returns the path of the ameshkov/dnscrypt server binary that
// [Start] runs. With LAB_GO_DNSCRYPT set, that file is used as it is. Otherwise
// it is tests/.bin/dnscrypt in the repository, built from the module in
// tests/tools ("go build" with -mod=readonly) when it is missing or was built
// from another tests/tools/go.mod or go.sum. A file tests/.bin/dnscrypt.stamp
// records what it was built from; tests/lab/install.sh uses the same rule.
//
// Several processes may call it at once: each builds into a directory of its
// own and renames the result into place. Errors wrap [ErrUnavailable].
func GoServerBinary() (string, error) {
	if p := os.Getenv("LAB_GO_DNSCRYPT"); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w: LAB_GO_DNSCRYPT: %w", ErrUnavailable, err)
		}
		return p, nil
	}
	root := RepoRoot()
	if root == "" {
		return "", fmt.Errorf("%w: repository root (go.mod of %s) not found", ErrUnavailable, modulePath)
	}
	buildMu.Lock()
	defer buildMu.Unlock()

	tools := filepath.Join(root, "tests", "tools")
	bin := filepath.Join(root, "tests", ".bin", "dnscrypt")
	want, err := goServerStamp(tools)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if got, err := os.ReadFile(bin + ".stamp"); err == nil && strings.TrimSpace(string(got)) == want && checkExecutable(bin) == nil {
		return bin, nil
	}
	if err := buildGoServer(tools, bin); err != nil {
		return "", fmt.Errorf("%w: building the Go DNSCrypt server: %w", ErrUnavailable, err)
	}
	if err := writeFileAtomic(bin+".stamp", []byte(want+"\n")); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return bin, nil
}

// goServerStamp is the hex SHA-256 of tests/tools/go.mod followed by go.sum,
// the same value as go_server_stamp in tests/lab/lib.sh.
func goServerStamp(tools string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(tools, name))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// buildGoServer builds goServerPkg in the module dir tools and renames the
// result to bin.
func buildGoServer(tools, bin string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		// go test puts GOROOT/bin first on PATH; this is for other runners.
		goCmd = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if os.Getenv("GOROOT") == "" || checkExecutable(goCmd) != nil {
			return fmt.Errorf("no go command: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(bin), ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, filepath.Base(bin))

	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "build", "-o", out, goServerPkg)
	cmd.Dir = tools
	cmd.Env = append(WithoutEnv(os.Environ(), "GOFLAGS", "GOWORK"), "GOFLAGS=-mod=readonly", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build in %s: %w\n%s", tools, err, LastLines(stderr.String(), 20))
	}
	return os.Rename(out, bin)
}

// checkExecutable reports whether path is a regular file someone may execute.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New(path + " is not an executable file")
	}
	return nil
}

// writeFileAtomic writes b to a temporary file beside path and renames it.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

// WithoutEnv returns env ("KEY=VALUE" strings, as os.Environ) without the
// variables named in names, or starting with a name that ends in "*": the
// environment for a script that must not inherit them, as in
// WithoutEnv(os.Environ(), "LAB_*").
func WithoutEnv(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		for _, n := range names {
			if p, ok := strings.CutSuffix(n, "*"); ok && strings.HasPrefix(k, p) || k == n {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// LastLines returns the last n lines of s, for error messages quoting a
// command's output.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// GoServerCmd returns the command of one more Go DNSCrypt server beside
// the lab's own: the same provider key and certificate settings
// (keys/go-server.yaml), forwarding to Backend, listening on ip:port (UDP
// and TCP). A test starts it to stop or kill a resolver of its own without
// touching the lab's, which other tests share. The caller starts the
// command, waits for the server to answer and ends it. The lab must run
// its Go server (not [Options].NoGoServer).
func (l *Lab) GoServerCmd(ip, port string) (*exec.Cmd, error) {
	bin, err := GoServerBinary()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(l.Dir, "keys", "go-server.yaml")
	if _, err := os.Stat(conf); err != nil {
		return nil, fmt.Errorf("labtest: a lab without its Go server: %w", err)
	}
	return exec.Command(bin, "server", "-c", conf, "-f", l.Backend, "-l", ip, "-p", port), nil
}
