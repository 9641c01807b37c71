package labtest

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// modulePath is the main module's path; RepoRoot looks for its go.mod.
const modulePath = "github.com/tor-dnscrypt/dnscrypt-proxy"

var (
	rootOnce sync.Once
	rootDir  string
)

// RepoRoot returns the directory of the repository that holds this package
// (the directory of the project's go.mod, with tests/lab in it), or "" if it
// cannot be found. It looks upwards from this source file, as recorded at
// build time, and then from the working directory, so it works from any
// package directory of the repository.
func RepoRoot() string {
	rootOnce.Do(func() {
		var starts []string
		if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
			starts = append(starts, filepath.Dir(file))
		}
		if wd, err := os.Getwd(); err == nil {
			starts = append(starts, wd)
		}
		for _, s := range starts {
			if r := findRoot(s); r != "" {
				rootDir = r
				return
			}
		}
	})
	return rootDir
}

// findRoot walks up from dir to the first directory whose go.mod declares
// modulePath and which has the lab scripts.
func findRoot(dir string) string {
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && moduleOf(b) == modulePath {
			if _, err := os.Stat(filepath.Join(dir, "tests", "lab", "start.sh")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// moduleOf returns the module path declared in a go.mod file, or "".
func moduleOf(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		rest = strings.TrimSpace(rest)
		if i := strings.Index(rest, "//"); i >= 0 {
			rest = strings.TrimSpace(rest[:i])
		}
		if uq, err := strconv.Unquote(rest); err == nil {
			rest = uq
		}
		return rest
	}
	return ""
}
