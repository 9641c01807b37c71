package egress

import (
	"net"
	"syscall"
)

// quickACK makes the kernel acknowledge at once the data c has received,
// instead of after the delayed-ACK timeout (TCP_DELACK_MIN, 40 ms, which
// Linux applies to a connection it judges interactive). Setting
// TCP_QUICKACK after a read with an ACK pending sends that ACK now
// (__tcp_sock_set_quickack calls tcp_cleanup_rbuf); set before data
// arrives it changes nothing, so it is called after reads. A no-op on
// other than TCP connections.
func quickACK(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok || c.LocalAddr().Network() != "tcp" {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
}
