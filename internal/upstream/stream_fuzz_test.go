package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// pipeDialer gives the upstream in-memory connections, whose server ends
// serve runs.
type pipeDialer struct {
	serve func(i int, c net.Conn)
	mu    sync.Mutex
	n     int
	wg    sync.WaitGroup
}

func (d *pipeDialer) DialTCP(_ context.Context, _ string, _ egress.Credentials, payload []byte) (net.Conn, error) {
	client, srv := net.Pipe()
	d.mu.Lock()
	i := d.n
	d.n++
	d.mu.Unlock()
	d.wg.Go(func() { d.serve(i, srv) })
	if len(payload) > 0 {
		if _, err := client.Write(payload); err != nil {
			client.Close()
			return nil, err
		}
	}
	return client, nil
}

func (d *pipeDialer) DialUDP(string) (*net.UDPConn, error) { return nil, egress.ErrNoUDP }
func (d *pipeDialer) Proxied() bool                        { return false }
func (d *pipeDialer) String() string                       { return "pipe" }

// FuzzStreamAnswers feeds a byte stream to the reader of a connection with
// three queries in flight: a frame whose first byte is below 0x80 gets the
// wire ID of query number (second byte % 3), others keep theirs. Each query
// must end exactly once: with an answer that is the frame sent, options
// stripped and the client's ID put back, or with an error once the
// stream ends (its retry on a second connection gets nothing).
func FuzzStreamAnswers(f *testing.F) {
	frame := func(b0, b1 byte) []byte {
		m := []byte{b0, b1, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}
		return append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...)
	}
	f.Add(bytes.Join([][]byte{frame(0, 0), frame(0, 1), frame(0, 2)}, nil))
	f.Add(bytes.Join([][]byte{frame(0, 2), frame(0xff, 0xff), frame(0, 0), frame(0, 0)}, nil))
	f.Add([]byte{0, 3, 1, 2, 3})
	f.Add([]byte{0xff, 0xff, 0, 1})
	f.Add(append(frame(0, 1), 0))
	f.Add(mustHexT("000f 0001 8180 0000 0000 0000 0001 00 0029 04d0 00000000 0008 000b 0002 0000 000c 0000"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		var ids [3]uint16
		var read atomic.Int32
		d := &pipeDialer{serve: func(i int, c net.Conn) {
			defer c.Close()
			if i > 0 {
				return // the retries get nothing
			}
			r := bufio.NewReader(c)
			for k := range 3 {
				var l [2]byte
				if _, err := io.ReadFull(r, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(r, q); err != nil {
					return
				}
				ids[k] = binary.BigEndian.Uint16(q)
				read.Add(1)
			}
			c.Write(patchIDs(stream, ids))
		}}
		_, a := newStream(t, KindTCP, "192.0.2.1:53", func(_ *Spec, o *Options) { o.Dialer = d })
		var qs [3]*Query
		for k := range qs {
			qs[k] = a.send("q.test", uint16(0x1000+k), 10*time.Second)
			// One at a time into the queue, so that query k is the k-th
			// the server reads.
			waitFor(t, "the server to read the query", func() bool { return read.Load() == int32(k+1) })
		}
		got := a.wait(3)
		frames := framesOf(patchIDs(stream, ids))
		for k, q := range qs {
			r := got[q]
			if r.err != nil {
				continue
			}
			// The first frame with the query's wire ID.
			var want []byte
			for _, fr := range frames {
				if len(fr) >= 12 && binary.BigEndian.Uint16(fr) == ids[k] {
					want, _, _ = edns.StripStreamOptions(bytes.Clone(fr))
					want[0], want[1] = q.Msg[0], q.Msg[1]
					break
				}
			}
			if !bytes.Equal(r.answer, want) {
				t.Fatalf("query %d: answer %x, want %x", k, r.answer, want)
			}
		}
		a.u.Close()
		d.wg.Wait()
		if len(a.results) != 0 {
			t.Fatalf("%d more outcomes", len(a.results))
		}
	})
}

// patchIDs returns a copy of stream where each frame whose message starts
// with a byte below 0x80 has the ID ids[second byte % 3].
func patchIDs(stream []byte, ids [3]uint16) []byte {
	out := bytes.Clone(stream)
	for p := 0; p+2 <= len(out); {
		n := int(binary.BigEndian.Uint16(out[p:]))
		body := out[p+2:]
		if len(body) >= 2 && body[0] < 0x80 {
			binary.BigEndian.PutUint16(body, ids[body[1]%3])
		}
		p += 2 + n
	}
	return out
}

// framesOf returns the whole frames of stream, up to the first one too
// short for a DNS header (the reader stops there).
func framesOf(stream []byte) [][]byte {
	var fs [][]byte
	for p := 0; p+2 <= len(stream); {
		n := int(binary.BigEndian.Uint16(stream[p:]))
		if n < 12 || p+2+n > len(stream) {
			break
		}
		fs = append(fs, stream[p+2:p+2+n])
		p += 2 + n
	}
	return fs
}

func mustHexT(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}
