package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/internal/dnscrypttest"
)

// TestQueryErrors: a query whose header parses but that cannot be
// forwarded gets an answer saying why, over UDP and TCP, and nothing goes
// upstream; over TCP the connection stays open.
func TestQueryErrors(t *testing.T) {
	srv := dnscrypttest.NewServer(t, nil)
	rp := startProxy(t, srv, Config{})
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	q := func() *dns.Msg { m := query("www.example", dns.TypeA); m.Id = 4242; return m }
	twoQuestions := q()
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	edns1 := q()
	edns1.SetEdns0(1232, false)
	edns1.IsEdns0().SetVersion(1)
	notify := q()
	notify.Opcode = dns.OpcodeNotify
	cookieOnly := q()
	cookieOnly.Question = nil
	cookieOnly.SetEdns0(1232, false)
	cookie, _ := hex.DecodeString("0102030405060708")
	cookieOnly.IsEdns0().Option = append(cookieOnly.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(cookie)})
	badCookie := q()
	badCookie.SetEdns0(1232, false)
	badCookie.IsEdns0().Option = append(badCookie.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: dns.EDNS0COOKIE, Data: []byte{1, 2, 3, 4, 5}})
	trailing := append(pack(q()), 0)

	for _, tc := range []struct {
		name      string
		pkt       []byte
		rcode     int
		questions int
		cookie    bool
	}{
		{"header only", make([]byte, 12), dns.RcodeFormatError, 0, false},
		{"two questions", pack(twoQuestions), dns.RcodeFormatError, 0, false},
		{"trailing byte", trailing, dns.RcodeFormatError, 1, false},
		{"EDNS version 1", pack(edns1), dns.RcodeBadVers, 1, false},
		{"opcode NOTIFY", pack(notify), dns.RcodeNotImplemented, 1, false},
		{"cookie only", pack(cookieOnly), dns.RcodeSuccess, 0, true},
		{"malformed cookie", pack(badCookie), dns.RcodeFormatError, 1, false},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				c, err := net.Dial(network, rp.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				r := exchangeRaw(t, c, network, tc.pkt)
				if r.Id != 4242 && len(tc.pkt) > 12 || !r.Response || r.Rcode != tc.rcode || len(r.Question) != tc.questions ||
					len(r.Answer) != 0 {
					t.Fatalf("got %v, want rcode %s with %d questions", r, dns.RcodeToString[tc.rcode], tc.questions)
				}
				if tc.cookie {
					opt := r.IsEdns0()
					if opt == nil || len(opt.Option) != 1 {
						t.Fatalf("no cookie in %v", r)
					}
					c, ok := opt.Option[0].(*dns.EDNS0_COOKIE)
					if !ok || len(c.Cookie) != 2*(8+16) || c.Cookie[:16] != hex.EncodeToString(cookie) {
						t.Fatalf("cookie %v, want the client's and a server cookie", opt.Option[0])
					}
				}
				if network == "tcp" { // the connection still works
					if r := exchangeRaw(t, c, network, pack(q())); r.Rcode != dns.RcodeSuccess {
						t.Fatalf("after the error: %v", r)
					}
				}
			})
		}
	}
	for _, qq := range srv.Queries() {
		if qq.Msg.Question[0].Name != "www.example." || len(qq.Msg.Question) != 1 {
			t.Fatalf("a refused query went upstream: %v", qq.Msg)
		}
		if opt := qq.Msg.IsEdns0(); opt != nil && len(opt.Option) > 0 {
			t.Fatalf("an option went upstream: %v", qq.Msg)
		}
	}
}

// exchangeRaw writes pkt on c and reads one message.
func exchangeRaw(t *testing.T, c net.Conn, network string, pkt []byte) *dns.Msg {
	t.Helper()
	buf := make([]byte, 65536)
	var b []byte
	if network == "tcp" {
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(pkt))), pkt...)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			t.Fatal(err)
		}
		b = buf[:binary.BigEndian.Uint16(buf)]
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
	} else {
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		b = buf[:n]
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	return r
}
