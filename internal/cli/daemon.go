package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables between the process and the copies of itself it
// starts. They are not part of the interface.
const (
	// daemonEnv holds the descriptor of the pipe a daemon child reports
	// on; its presence makes the process the daemon child.
	daemonEnv = "_DNSCRYPT_PROXY_DAEMON_FD"
	// pidHelperEnv holds the pid file a helper process removes; its
	// presence makes the process that helper.
	pidHelperEnv    = "_DNSCRYPT_PROXY_PIDFILE_HELPER"
	pidHelperPIDEnv = "_DNSCRYPT_PROXY_PIDFILE_PID"
)

// selfExe is the running program, even if its file was replaced since.
const selfExe = "/proc/self/exe"

// DaemonReadyTimeout is how long the parent of --daemonize waits for the
// child to answer queries (that is, to get a certificate) before it gives
// up, stops the child and fails.
var DaemonReadyTimeout = 60 * time.Second

// Lines of the daemon pipe, child to parent.
const (
	daemonReady = "READY"
	daemonLog   = "LOG "
)

// daemonize starts the program again, detached (new session, standard
// input and output on /dev/null, standard error on the log file if any),
// and waits until the child answers queries or fails. It returns the exit
// status for the parent: 0 once the child is ready; the child's status,
// with the warnings and errors it logged, if it ends first.
func daemonize(args []string, plan *Plan, stderr io.Writer) int {
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "dnscrypt-proxy: unable to daemonize: %v\n", err)
		return ExitFailure
	}
	defer pr.Close()
	cmd := exec.Command(selfExe, args...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), daemonEnv+"=3")
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if plan.Log.File != "" {
		// Go's own fatal errors go to standard error: keep them.
		if f, err := openLogFile(plan.Log.File); err == nil {
			defer f.Close()
			cmd.Stderr = f
		}
	}
	if err := cmd.Start(); err != nil {
		pw.Close()
		fmt.Fprintf(stderr, "dnscrypt-proxy: unable to daemonize: %v\n", err)
		return ExitFailure
	}
	pw.Close()
	exited := make(chan int, 1)
	go func() {
		cmd.Wait()
		exited <- cmd.ProcessState.ExitCode()
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == daemonReady:
				ready <- true
				return
			case strings.HasPrefix(line, daemonLog):
				fmt.Fprintln(stderr, strings.TrimPrefix(line, daemonLog))
			}
		}
		ready <- false
	}()

	timer := time.NewTimer(DaemonReadyTimeout)
	defer timer.Stop()
	select {
	case ok := <-ready:
		if ok {
			return ExitOK
		}
		// The child closed the pipe: it is exiting.
		select {
		case code := <-exited:
			return childFailed(stderr, code)
		case <-time.After(5 * time.Second):
			fmt.Fprintf(stderr, "dnscrypt-proxy: the daemon (PID %d) stopped reporting before it answered\n", cmd.Process.Pid)
			return ExitFailure
		}
	case code := <-exited:
		// Let the reader print what the child wrote before it ended.
		select {
		case ok := <-ready:
			if ok {
				return ExitOK // ready, then exited at once: not our failure to report
			}
		case <-time.After(time.Second):
		}
		return childFailed(stderr, code)
	case <-timer.C:
		fmt.Fprintf(stderr, "dnscrypt-proxy: the daemon (PID %d) did not answer within %v (no certificate from the resolver yet?); stopping it\n",
			cmd.Process.Pid, DaemonReadyTimeout)
	case <-ctx.Done():
		fmt.Fprintf(stderr, "dnscrypt-proxy: interrupted; stopping the daemon (PID %d)\n", cmd.Process.Pid)
	}
	stopChild(cmd.Process, exited)
	return ExitFailure
}

func childFailed(stderr io.Writer, code int) int {
	if code <= 0 { // stopped by a signal, or cleanly before it was ready
		fmt.Fprintf(stderr, "dnscrypt-proxy: the daemon stopped before it answered\n")
		return ExitFailure
	}
	fmt.Fprintf(stderr, "dnscrypt-proxy: the daemon exited with status %d before it answered\n", code)
	return code
}

// stopChild ends a child that did not get ready: SIGTERM, then SIGKILL.
func stopChild(p *os.Process, exited <-chan int) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		p.Kill()
		<-exited
	}
}

// daemonChild is the child's end of the daemon pipe.
type daemonChild struct {
	mu sync.Mutex
	w  *os.File
}

// openDaemonChild returns the pipe to the parent when this process is a
// daemon child, else nil.
func openDaemonChild() *daemonChild {
	v := os.Getenv(daemonEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(daemonEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	syscall.CloseOnExec(fd)
	return &daemonChild{w: os.NewFile(uintptr(fd), "daemon-pipe")}
}

// log passes a log line to the parent, which prints it.
func (d *daemonChild) log(line string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.w != nil {
		io.WriteString(d.w, daemonLog+strings.ReplaceAll(line, "\n", " ")+"\n")
	}
}

// ready tells the parent that the proxy answers, and closes the pipe.
func (d *daemonChild) ready() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.w != nil {
		io.WriteString(d.w, daemonReady+"\n")
		d.w.Close()
		d.w = nil
	}
}

// close closes the pipe without a ready line: the parent reports failure.
func (d *daemonChild) close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.w != nil {
		d.w.Close()
		d.w = nil
	}
}
