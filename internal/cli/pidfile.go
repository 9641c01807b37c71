package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// errRunning reports a pid file naming another running dnscrypt-proxy.
var errRunning = errors.New("cli: another dnscrypt-proxy is running")

// writePidFile writes the PID of this process to path. Unlike 1.x, it
// refuses to overwrite the pid file of another running dnscrypt-proxy
// (same program name in /proc); a stale file, or one naming some other
// program, is overwritten.
func writePidFile(path string) error {
	if old, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(old))); err == nil && pid > 0 && pid != os.Getpid() && sameProgramRunning(pid) {
			return fmt.Errorf("%w with PID %d", errRunning, pid)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	if err2 := f.Close(); err == nil {
		err = err2
	}
	return err
}

// sameProgramRunning reports whether process pid runs a program of the
// same name as this one.
func sameProgramRunning(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	mine, err1 := os.ReadFile("/proc/self/comm")
	theirs, err2 := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err1 == nil && err2 == nil && bytes.Equal(mine, theirs)
}

// removePidFile removes path if it still holds pid.
func removePidFile(path string, pid int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		return nil // another process's now
	}
	return os.Remove(path)
}

// pidFileHelper removes the pid file after the process has given up the
// rights to: it is a copy of the program, started as root before the
// privileges are dropped, that waits for a pipe from the main process to
// close (at exit, whatever the cause) and then removes the file. 1.x did
// the same with a process kept outside its chroot.
type pidFileHelper struct {
	w       *os.File
	exited  chan struct{} // closed once the helper has ended
	waitErr error         // its exec.Cmd.Wait result, set before exited closes
}

func startPidFileHelper(path string) (*pidFileHelper, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := exec.Command(selfExe)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), pidHelperEnv+"="+path, pidHelperPIDEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.ExtraFiles = []*os.File{pr}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, err
	}
	h := &pidFileHelper{w: pw, exited: make(chan struct{})}
	go func() { // it normally ends after this process
		h.waitErr = cmd.Wait()
		close(h.exited)
	}()
	return h, nil
}

// done lets the helper remove the file now.
func (h *pidFileHelper) done() {
	if h != nil && h.w != nil {
		h.w.Close()
		h.w = nil
	}
}

// wait waits until the helper has ended and returns how it ended (nil:
// exit status 0). Call done first, or it waits for this process's end.
func (h *pidFileHelper) wait() error {
	<-h.exited
	return h.waitErr
}

// runPidFileHelper is the helper process: it ignores the signals meant
// for the main process, waits for the end of the pipe on descriptor 3,
// and removes the pid file if it still names the main process.
func runPidFileHelper(path string) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	pid, err := strconv.Atoi(os.Getenv(pidHelperPIDEnv))
	if err != nil {
		return ExitFailure
	}
	pipe := os.NewFile(3, "pidfile-pipe")
	io.Copy(io.Discard, pipe)
	if removePidFile(path, pid) != nil {
		return ExitFailure
	}
	return ExitOK
}
