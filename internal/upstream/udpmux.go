package upstream

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// udpMux sends encrypted queries to the resolver over a few connected UDP
// sockets and hands each response to the attempt whose client nonce it
// echoes. Connected sockets only accept datagrams from the resolver's
// address; the nonce (never repeated, 96 random bits) matches the rest.
type udpMux struct {
	conns []*net.UDPConn
	mu    sync.Mutex
	// pending maps a client nonce to the attempt waiting for it.
	pending map[[dnscrypt.HalfNonceSize]byte]*attempt
	next    uint32
	wg      sync.WaitGroup
	u       *DNSCrypt // delivers answers, takes failed attempts
}

// readerBuf is one UDP reader's scratch space for completing requests.
type readerBuf struct{ ans, out []byte }

func newUDPMux(u *DNSCrypt, n int) (*udpMux, error) {
	m := &udpMux{pending: make(map[[dnscrypt.HalfNonceSize]byte]*attempt), u: u}
	for range n {
		c, err := u.opts.Dialer.DialUDP(u.spec.Addr)
		if err != nil {
			m.close()
			return nil, err
		}
		m.conns = append(m.conns, c)
	}
	for i, c := range m.conns {
		m.wg.Add(1)
		go m.read(i, c)
	}
	return m, nil
}

// close closes the sockets and waits for the readers.
func (m *udpMux) close() {
	for _, c := range m.conns {
		c.Close()
	}
	m.wg.Wait()
}

func (m *udpMux) read(sock int, c *net.UDPConn) {
	defer m.wg.Done()
	buf := make([]byte, 65536)
	rb := &readerBuf{ans: make([]byte, 0, 65536), out: make([]byte, 0, 65536)}
	var failed []*attempt
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// An ICMP error (port or host unreachable) for one of the
			// datagrams sent on this socket: the kernel does not say
			// which, so every attempt waiting on it goes on at once
			// (over TCP) instead of waiting out the UDP deadline.
			failed = m.claimSocket(sock, failed[:0])
			m.u.udpFailed(failed, fmt.Errorf("resolver over UDP: %w", err))
			clear(failed)
			continue
		}
		if n < dnscrypt.ResolverMagicLen+dnscrypt.HalfNonceSize {
			continue
		}
		nonce := [dnscrypt.HalfNonceSize]byte(buf[dnscrypt.ResolverMagicLen:])
		m.mu.Lock()
		a := m.pending[nonce]
		if a != nil && a.state.CompareAndSwap(stateWaiting, stateOwned) {
			delete(m.pending, nonce)
		} else {
			a = nil
		}
		m.mu.Unlock()
		if a != nil {
			m.u.deliver(m, a, buf[:n], rb)
		}
	}
}

// send registers the UDP attempt a, sealed into a.pkt under a.nonce,
// and sends it. On a write error it takes a back and returns the error; if
// a was claimed meanwhile (dropped), it returns errClaimed and a is no
// longer the caller's.
func (m *udpMux) send(a *attempt) error {
	m.mu.Lock()
	a.state.Store(stateWaiting)
	m.pending[a.nonce] = a
	a.sock = int(m.next % uint32(len(m.conns)))
	c := m.conns[a.sock]
	m.next++
	m.mu.Unlock()
	if _, err := c.Write(a.pkt); err != nil {
		if !m.claim(a) {
			return errClaimed
		}
		return err
	}
	return nil
}

// errClaimed: the attempt went to another owner.
var errClaimed = errors.New("attempt claimed by another owner")

// wait puts the UDP attempt a back to wait for another response
// with the same nonce, after one that did not open.
func (m *udpMux) wait(a *attempt) {
	m.mu.Lock()
	a.state.Store(stateWaiting)
	m.pending[a.nonce] = a
	m.mu.Unlock()
}

// claim takes the waiting UDP attempt a out of the pending map; it
// reports false if a is not waiting there (another owner has it).
func (m *udpMux) claim(a *attempt) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The state first: a.nonce is only a's own while it waits.
	if a.state.Load() != stateWaiting || m.pending[a.nonce] != a || !a.state.CompareAndSwap(stateWaiting, stateOwned) {
		return false
	}
	delete(m.pending, a.nonce)
	return true
}

// claimAll claims every UDP attempt waiting (when the sockets close).
func (m *udpMux) claimAll(out []*attempt) []*attempt {
	m.mu.Lock()
	defer m.mu.Unlock()
	for nonce, a := range m.pending {
		if a.state.CompareAndSwap(stateWaiting, stateOwned) {
			delete(m.pending, nonce)
			out = append(out, a)
		}
	}
	return out
}

// claimSocket claims the UDP attempts waiting on socket sock.
func (m *udpMux) claimSocket(sock int, out []*attempt) []*attempt {
	m.mu.Lock()
	defer m.mu.Unlock()
	for nonce, a := range m.pending {
		if a.sock == sock && a.state.CompareAndSwap(stateWaiting, stateOwned) {
			delete(m.pending, nonce)
			out = append(out, a)
		}
	}
	return out
}

// expired claims the UDP attempts whose UDP attempt ended by now.
func (m *udpMux) expired(now time.Time, out []*attempt) []*attempt {
	m.mu.Lock()
	defer m.mu.Unlock()
	for nonce, a := range m.pending {
		if !now.Before(a.udpDeadline) && a.state.CompareAndSwap(stateWaiting, stateOwned) {
			delete(m.pending, nonce)
			out = append(out, a)
		}
	}
	return out
}
