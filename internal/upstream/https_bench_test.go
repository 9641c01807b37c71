package upstream

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/edns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/egress"
)

// echoDoH is the cheapest DNS-over-HTTPS server: it answers each query
// (a GET's dns parameter, or a POST's body) with the query itself, QR set
// (a NODATA answer, the query's Padding option included), so that a
// benchmark measures the client.
func echoDoH(w http.ResponseWriter, r *http.Request) {
	var buf [1024]byte
	var n int
	if r.Method == http.MethodGet {
		n, _ = base64.RawURLEncoding.Decode(buf[:], []byte(r.URL.Query().Get("dns")))
	} else {
		n, _ = io.ReadFull(r.Body, buf[:])
	}
	if n < dnsHeaderLen {
		http.Error(w, "short", http.StatusBadRequest)
		return
	}
	buf[2] |= 0x80
	w.Header()["Content-Type"] = []string{dohMediaType}
	w.Write(buf[:n])
}

// BenchmarkHTTPS: queries through the DoH upstream to an in-process
// HTTP/2 server over loopback, one at a time and many at once. The
// allocations include the server's (same process).
func BenchmarkHTTPS(b *testing.B) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(echoDoH))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	up, err := New(Spec{Kind: KindHTTPS, Addr: srv.Listener.Addr().String(), ServerName: "doh.test",
		Pins: [][32]byte{sha256.Sum256(srv.Certificate().RawTBSCertificate)}},
		Options{Dialer: egress.Direct(), Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer up.Close()
	m := new(dns.Msg)
	m.SetQuestion("www.example.org.", dns.TypeA)
	pkt, _ := m.Pack()
	msg, meta, err := edns.PrepareQuery(nil, pkt, 1232)
	if err != nil {
		b.Fatal(err)
	}
	id := NewIdentity(egress.Credentials{}, nil, time.Now())
	run := func(pb interface{ Next() bool }) {
		r := make(errReceiver, 1)
		q := &Query{Msg: msg, Limit: meta.Limit, Identity: id, Done: r}
		for pb.Next() {
			q.Reset()
			q.Deadline = time.Now().Add(10 * time.Second)
			up.Exchange(q)
			if err := <-r; err != nil {
				b.Error(err)
				return
			}
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		run(loop{b})
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) { run(pb) })
	})
}

// errReceiver passes on the error of each outcome, and nothing else.
type errReceiver chan error

func (r errReceiver) Receive(_ *Query, _ []byte, err error) { r <- err }

// loop adapts b.Loop to the Next of testing.PB.
type loop struct{ b *testing.B }

func (l loop) Next() bool { return l.b.Loop() }
