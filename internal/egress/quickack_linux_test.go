package egress

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// naglePeer is the far end of a loopback TCP connection that behaves as Tor
// does on its SOCKS port: Nagle on (no TCP_NODELAY).
type naglePeer struct {
	t *testing.T
	c *net.TCPConn
}

func listenNagle(t *testing.T) (addr string, accept func() *naglePeer) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() *naglePeer {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return nil
		}
		tc := c.(*net.TCPConn)
		tc.SetNoDelay(false)
		t.Cleanup(func() { tc.Close() })
		return &naglePeer{t, tc}
	}
}

// unacked returns the bytes this end sent that the other has not
// acknowledged (SIOCOUTQ).
func (p *naglePeer) unacked() int {
	rc, err := p.c.SyscallConn()
	if err != nil {
		p.t.Fatal(err)
	}
	var n int
	rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

// ackedSoon reports whether everything sent is acknowledged within 20 ms,
// half the shortest delayed ACK (40 ms): an ACK sent at once.
func (p *naglePeer) ackedSoon() bool {
	for deadline := time.Now().Add(20 * time.Millisecond); p.unacked() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// TestOptimisticReplyAcked: with optimistic data nothing follows Tor's
// CONNECT reply, so its ACK must be sent at once, or Tor (Nagle) holds the
// answer until the delayed ACK, 40 ms later.
func TestOptimisticReplyAcked(t *testing.T) {
	addr, accept := listenNagle(t)
	done := make(chan bool, 1)
	dialed := make(chan struct{})
	go func() {
		p := accept()
		if p == nil {
			done <- false
			return
		}
		buf := make([]byte, 3+10+4)
		io.ReadFull(p.c, buf[:3])
		p.c.Write([]byte{5, 0})
		io.ReadFull(p.c, buf[3:]) // CONNECT and the payload
		p.c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 53})
		<-dialed
		done <- p.ackedSoon()
	}()
	d := SOCKS5(SOCKSConfig{Addr: addr, OptimisticData: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialTCP(ctx, "127.0.0.1:53", Credentials{}, []byte("ping"))
	close(dialed)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !<-done {
		t.Fatal("the CONNECT reply was not acknowledged at once")
	}
}

// signalConn reports each TCP_QUICKACK set on it (through SyscallConn).
type signalConn struct {
	*net.TCPConn
	acked chan struct{}
}

func (c signalConn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.TCPConn.SyscallConn()
	return signalRaw{rc, c.acked}, err
}

type signalRaw struct {
	syscall.RawConn
	acked chan struct{}
}

func (r signalRaw) Control(f func(fd uintptr)) error {
	err := r.RawConn.Control(f)
	r.acked <- struct{}{}
	return err
}

// TestPartialAnswerAcked: an answer that arrives in two writes (Tor writes
// each cell's data as it comes) gets its first part acknowledged at once,
// so that Nagle does not hold the second until the delayed ACK.
func TestPartialAnswerAcked(t *testing.T) {
	addr, accept := listenNagle(t)
	peer := make(chan *naglePeer, 1)
	go func() { peer <- accept() }()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := <-peer
	if p == nil {
		t.FailNow()
	}
	// Interactive traffic first, as the SOCKS exchange is: Linux then
	// delays its ACKs.
	for range 3 {
		c.Write([]byte("q"))
		io.ReadFull(p.c, make([]byte, 1))
		p.c.Write([]byte("r"))
		io.ReadFull(c, make([]byte, 1))
	}
	sc := signalConn{c.(*net.TCPConn), make(chan struct{}, 4)}
	msg, sent := make([]byte, 600), make([]byte, 600)
	got := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(ackConn{sc}, msg)
		got <- err
	}()
	p.c.Write(sent[:100])
	select {
	case <-sc.acked:
	case err := <-got:
		t.Fatalf("read ended early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no TCP_QUICKACK after a partial read")
	}
	if !p.ackedSoon() {
		t.Fatal("the first part was not acknowledged at once")
	}
	p.c.Write(sent[100:])
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}
