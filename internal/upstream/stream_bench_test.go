package upstream

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// echoServer answers each query with itself, QR set, as fast as it can:
// it flushes its answers when it has read every query that arrived.
// It allocates nothing per query.
func echoServer(tb testing.TB, cert *tls.Certificate) string {
	tb.Helper()
	return newStreamServer(tb, cert, nil, func(s *streamServer) { s.serveRaw = echo }).Addr
}

func echo(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 16<<10)
	w := bufio.NewWriterSize(c, 16<<10)
	buf := make([]byte, 2+65535)
	for {
		if _, err := io.ReadFull(r, buf[:2]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(buf))
		if _, err := io.ReadFull(r, buf[2:2+n]); err != nil {
			return
		}
		buf[4] |= 0x80 // QR
		w.Write(buf[:2+n])
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// chanReceiver signals each outcome on a channel.
type chanReceiver struct {
	done chan struct{}
	err  error
}

func (r *chanReceiver) Receive(_ *Query, _ []byte, err error) {
	r.err = err
	r.done <- struct{}{}
}

// BenchmarkStream measures a query through a Stream to an in-process
// server on loopback, one at a time ("serial": the round trip) and from
// many goroutines at once ("parallel": pipelined on the one connection).
// allocs/op counts the whole process, the server's included.
func BenchmarkStream(b *testing.B) {
	cert, pin, _ := selfSigned(b, "dns.test")
	for _, kind := range kinds {
		var c *tls.Certificate
		var mod func(*Spec, *Options)
		if kind == KindTLS {
			c, mod = cert, withPin(pin)
		}
		addr := echoServer(b, c)
		u, _ := newStream(b, kind, addr, mod)
		msg := streamQuery(b, "www.example.com", 1, true)
		ask := func(b *testing.B, q *Query, r *chanReceiver) {
			q.Reset()
			q.Deadline = time.Now().Add(10 * time.Second)
			u.Exchange(q)
			<-r.done
			if r.err != nil {
				b.Fatal(r.err)
			}
		}
		newQuery := func() (*Query, *chanReceiver) {
			r := &chanReceiver{done: make(chan struct{}, 1)}
			return &Query{Msg: msg, Limit: 1232, Identity: NewIdentity(egress.Credentials{}, nil, time.Now()), Done: r}, r
		}
		b.Run(kind.String()+"/serial", func(b *testing.B) {
			q, r := newQuery()
			ask(b, q, r) // connect
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ask(b, q, r)
			}
		})
		b.Run(kind.String()+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				q, r := newQuery()
				for pb.Next() {
					ask(b, q, r)
				}
			})
		})
		if got := u.Dials.Load(); got != 1 {
			b.Errorf("%d connections, want 1", got)
		}
	}
}
