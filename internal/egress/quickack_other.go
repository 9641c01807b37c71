//go:build !linux

package egress

import "net"

// quickACK is Linux's TCP_QUICKACK; elsewhere it does nothing.
func quickACK(net.Conn) {}
