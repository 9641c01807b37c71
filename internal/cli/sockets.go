package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenFDsStart is SD_LISTEN_FDS_START: the first socket systemd passes.
const listenFDsStart = 3

// bind opens the UDP and TCP sockets on addr.
func bind(addr string) (net.PacketConn, net.Listener, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		//lint:ignore ST1005 1.x's message, logged as is
		return nil, nil, fmt.Errorf("Unable to bind (UDP) [%s]: %w", addr, unwrapOpError(err))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		//lint:ignore ST1005 1.x's message, logged as is
		return nil, nil, fmt.Errorf("Unable to bind (TCP) [%s]: %w", addr, unwrapOpError(err))
	}
	return pc, ln, nil
}

func unwrapOpError(err error) error {
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		if se, ok := errors.AsType[*os.SyscallError](oe.Err); ok {
			return se.Err
		}
		return oe.Err
	}
	return err
}

// systemdSockets takes the sockets of systemd socket activation
// (sd_listen_fds(3)): LISTEN_PID must name this process, and LISTEN_FDS
// must count exactly two sockets, one UDP and one listening TCP, as 1.x
// requires. ok is false when systemd passed nothing. The variables are
// removed from the environment, so that children do not see them.
func systemdSockets() (pc net.PacketConn, ln net.Listener, ok bool, err error) {
	pidStr, fdsStr := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if pidStr == "" || fdsStr == "" {
		return nil, nil, false, nil
	}
	if pid, err := strconv.Atoi(pidStr); err != nil || pid != os.Getpid() {
		return nil, nil, false, nil // meant for another process
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 || n > 1024 {
		//lint:ignore ST1005 1.x's message, logged as is
		return nil, nil, false, fmt.Errorf("Invalid LISTEN_FDS: [%s]", fdsStr)
	}
	if n == 0 {
		return nil, nil, false, nil
	}
	var files []*os.File
	for fd := listenFDsStart; fd < listenFDsStart+n; fd++ {
		syscall.CloseOnExec(fd)
		files = append(files, os.NewFile(uintptr(fd), "systemd-socket-"+strconv.Itoa(fd)))
	}
	// net.FilePacketConn and net.FileListener work on copies.
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	fail := func(e error) (net.PacketConn, net.Listener, bool, error) {
		if pc != nil {
			pc.Close()
		}
		if ln != nil {
			ln.Close()
		}
		return nil, nil, false, e
	}
	if n != 2 {
		//lint:ignore ST1005 1.x's message, logged as is
		return fail(fmt.Errorf("Wrong number of systemd sockets: %d - should be 2", n))
	}
	for _, f := range files {
		typ, err := syscall.GetsockoptInt(int(f.Fd()), syscall.SOL_SOCKET, syscall.SO_TYPE)
		if err != nil {
			return fail(fmt.Errorf("systemd descriptor %d is not a socket: %w", f.Fd(), err))
		}
		switch {
		case typ == syscall.SOCK_DGRAM && pc == nil:
			if pc, err = net.FilePacketConn(f); err != nil {
				return fail(fmt.Errorf("systemd UDP socket: %w", err))
			}
		case typ == syscall.SOCK_STREAM && ln == nil:
			if ln, err = net.FileListener(f); err != nil {
				return fail(fmt.Errorf("systemd TCP socket: %w", err))
			}
		}
	}
	if pc == nil {
		//lint:ignore ST1005 1.x's message, logged as is
		return fail(errors.New("No systemd UDP socket passed in"))
	}
	if ln == nil {
		//lint:ignore ST1005 1.x's message, logged as is
		return fail(errors.New("No systemd TCP socket passed in"))
	}
	return pc, ln, true, nil
}

// sdNotify sends state to systemd's notification socket, if NOTIFY_SOCKET
// is set (sd_notify(3)).
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
