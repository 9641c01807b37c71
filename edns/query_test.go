package edns

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// Known-answer wire vectors, written by hand from RFC 1035 and RFC 6891.
func TestPrepareQueryVectors(t *testing.T) {
	const (
		hdrNoOPT  = "abcd 0120 0001 0000 0000 0000"                         // RD, AD; QD=1, AR=0
		hdrOPT    = "abcd 0130 0001 0000 0000 0001"                         // RD, AD, CD; AR=1
		question  = "07 6578616d706c65 03 636f6d 00 000f 0001"              // example.com. MX IN
		optDig    = "00 0029 04d0 00008000 000c 000a 0008 0102030405060708" // 1232, DO, cookie
		optDig512 = "00 0029 0200 00008000 000c 000a 0008 0102030405060708"
		// ECS: family 1 (IPv4), source prefix 24, scope 0, 192.0.2.
		optCookieECS = "00 0029 04d0 00008000 0017 000a 0008 0102030405060708 0008 0007 0001 18 00 c00002"
		optECSCookie = "00 0029 04d0 00008000 0017 0008 0007 0001 18 00 c00002 000a 0008 0102030405060708"
	)
	tests := []struct {
		name      string
		in        string
		size      uint16
		want      string
		wantLimit int
		wantOPT   bool
	}{
		{"no OPT, 1252 adds one", hdrNoOPT + question, 1252,
			"abcd 0120 0001 0000 0000 0001" + question + "00 0029 04e4 00000000 0000", 512, false},
		{"no OPT, 512 adds nothing", hdrNoOPT + question, 512, hdrNoOPT + question, 512, false},
		{"no OPT, 0 adds nothing", hdrNoOPT + question, 0, hdrNoOPT + question, 512, false},
		// No COOKIE option goes upstream either.
		{"client OPT rewritten, cookie removed", hdrOPT + question + optDig, 4096,
			hdrOPT + question + "00 0029 1000 00008000 0000", 1232, true},
		{"client OPT kept at 512, cookie removed", hdrOPT + question + optDig, 512,
			hdrOPT + question + "00 0029 04d0 00008000 0000", 1232, true},
		{"client OPT 512 rewritten", hdrOPT + question + optDig512, 1252,
			hdrOPT + question + "00 0029 04e4 00008000 0000", 512, true},
		{"client OPT size 0", hdrOPT + question + "00 0029 0000 01007fff 0000", 1252,
			hdrOPT + question + "00 0029 04e4 01007fff 0000", 512, true},
		{"client and server cookie between padding and NSID", hdrOPT + question +
			"00 0029 04d0 00008000 0026 000c 0002 0000 000a 0018 0102030405060708 01000000 5cf79f11 1f8130c3eee29480 0003 0000", 1252,
			hdrOPT + question + "00 0029 04e4 00008000 000a 000c 0002 0000 0003 0000", 1232, true},
		{"two cookies", hdrOPT + question + "00 0029 04d0 00000000 0018 000a 0008 0102030405060708 000a 0008 1112131415161718", 0,
			hdrOPT + question + "00 0029 04d0 00000000 0000", 1232, true},
		// No Client Subnet option goes upstream.
		{"cookie and ECS, both removed", hdrOPT + question + optCookieECS, 1252,
			hdrOPT + question + "00 0029 04e4 00008000 0000", 1232, true},
		{"ECS and cookie, both removed", hdrOPT + question + optECSCookie, 1252,
			hdrOPT + question + "00 0029 04e4 00008000 0000", 1232, true},
		{"cookie and ECS at 512, both removed", hdrOPT + question + optCookieECS, 512,
			hdrOPT + question + "00 0029 04d0 00008000 0000", 1232, true},
		{"ECS alone, removed", hdrOPT + question + "00 0029 04d0 00000000 000b 0008 0007 0001 18 00 c00002", 0,
			hdrOPT + question + "00 0029 04d0 00000000 0000", 1232, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, q, err := PrepareQuery([]byte("prefix"), mustHex(tt.in), tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte("prefix"), mustHex(tt.want)...); !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
			if q.ID != 0xabcd || q.Limit != tt.wantLimit || q.HadOPT != tt.wantOPT {
				t.Errorf("got ID %#x limit %d OPT %v, want 0xabcd %d %v",
					q.ID, q.Limit, q.HadOPT, tt.wantLimit, tt.wantOPT)
			}
		})
	}
}

func TestPrepareQuery(t *testing.T) {
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708a1a2a3a4a5a6a7a8"}
	pad := &dns.EDNS0_PADDING{Padding: make([]byte, 20)}
	ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{192, 0, 2, 0}}
	local := &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("hi")}
	tsig := func(m *dns.Msg) *dns.Msg {
		m.Extra = append(m.Extra, &dns.TSIG{
			Hdr:       dns.RR_Header{Name: "key.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
			Algorithm: dns.HmacSHA256, MACSize: 2, MAC: "0011", TimeSigned: 1, Fudge: 300, OrigId: m.Id,
		})
		return m
	}
	tests := []struct {
		name      string
		m         *dns.Msg
		size      uint16
		wantSize  int // -1: no OPT expected
		wantLimit int
		wantWire  bool // judged on the wire alone
	}{
		{"no OPT 1252", newQuery("example.com.", dns.TypeA), 1252, 1252, 512, true},
		{"no OPT 4096", newQuery("example.com.", dns.TypeA), 4096, 4096, 512, true},
		{"no OPT 513", newQuery("example.com.", dns.TypeA), 513, 513, 512, true},
		{"no OPT 512", newQuery("example.com.", dns.TypeA), 512, -1, 512, true},
		{"no OPT 0", newQuery("example.com.", dns.TypeA), 0, -1, 512, true},
		{"OPT DO options", withOPT(newQuery("example.com.", dns.TypeDS), 4096, true, cookie, pad, local), 1252, 1252, 4096, true},
		{"OPT kept at 512", withOPT(newQuery("example.com.", dns.TypeDS), 4096, true, cookie), 512, 4096, 4096, true},
		{"OPT kept at 100", withOPT(newQuery("example.com.", dns.TypeDS), 1400, true, cookie), 100, 1400, 1400, true},
		{"OPT small size", withOPT(newQuery("example.com.", dns.TypeA), 200, false), 1252, 1252, 512, true},
		{"OPT with ECS", withOPT(newQuery("example.com.", dns.TypeA), 1232, true, ecs), 1252, 1252, 1232, false},
		{"OPT with ECS and cookie", withOPT(newQuery("example.com.", dns.TypeA), 1232, true, ecs, cookie), 1252, 1252, 1232, false},
		{"OPT with ECS and cookie kept at 512", withOPT(newQuery("example.com.", dns.TypeA), 1232, true, cookie, ecs), 512, 1232, 1232, false},
		{"OPT with ECS then TSIG: signed, ECS removed anyway", tsig(withOPT(newQuery("example.com.", dns.TypeA), 1232, true, ecs, cookie)), 1252, 1232, 1232, false},
		{"OPT then TSIG: signed, unchanged", tsig(withOPT(newQuery("example.com.", dns.TypeA), 1232, true)), 1252, 1232, 1232, false},
		{"TSIG only: signed, unchanged", tsig(newQuery("example.com.", dns.TypeA)), 1252, -1, 512, false},
		{"TSIG only 512", tsig(newQuery("example.com.", dns.TypeA)), 512, -1, 512, false},
		{"other additional record", func() *dns.Msg {
			m := newQuery("example.com.", dns.TypeA)
			m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: []byte{192, 0, 2, 1}})
			return m
		}(), 1252, 1252, 512, false},
		{"root", newQuery(".", dns.TypeNS), 1252, 1252, 512, true},
		{"odd label bytes", newQuery(`a\.b\000\255x.Example.COM.`, dns.TypeTXT), 1252, 1252, 512, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pack(t, tt.m)
			s, err := scanQuery(in)
			if err != nil {
				t.Fatalf("scan: %v", err)
			}
			if s.simple != tt.wantWire {
				t.Errorf("got wire path %v, want %v", s.simple, tt.wantWire)
			}
			got, q, err := PrepareQuery(nil, in, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if q.ID != tt.m.Id || q.Limit != tt.wantLimit || q.HadOPT != (tt.m.IsEdns0() != nil) {
				t.Errorf("got %+v, want ID %#x limit %d OPT %v", q, tt.m.Id, tt.wantLimit, tt.m.IsEdns0() != nil)
			}
			if q.Limit != ClientLimit(tt.m) {
				t.Errorf("got limit %d, ClientLimit says %d", q.Limit, ClientLimit(tt.m))
			}
			m := unpack(t, got)
			if m.MsgHdr != tt.m.MsgHdr {
				t.Errorf("got header %+v, want %+v", m.MsgHdr, tt.m.MsgHdr)
			}
			if len(m.Question) != 1 || m.Question[0] != tt.m.Question[0] {
				t.Errorf("got question %v, want %v", m.Question, tt.m.Question)
			}
			opt := m.IsEdns0()
			switch {
			case tt.wantSize < 0 && opt != nil:
				t.Errorf("got OPT %v, want none", opt)
			case tt.wantSize >= 0 && opt == nil:
				t.Fatalf("got no OPT, want size %d", tt.wantSize)
			case tt.wantSize >= 0:
				if countOPT(m) != 1 || int(opt.UDPSize()) != tt.wantSize {
					t.Errorf("got %d OPT, size %d, want 1, %d", countOPT(m), opt.UDPSize(), tt.wantSize)
				}
				if in := tt.m.IsEdns0(); in != nil {
					if opt.Hdr.Ttl != in.Hdr.Ttl {
						t.Errorf("got OPT TTL %#x, want %#x", opt.Hdr.Ttl, in.Hdr.Ttl)
					}
					if gotO, wantO := optString(opt), upstreamOptions(in); gotO != wantO {
						t.Errorf("got options %s, want %s", gotO, wantO)
					}
				} else if opt.Hdr.Ttl != 0 || len(opt.Option) != 0 {
					t.Errorf("added OPT %v, want plain", opt)
				}
			}
			if hasPrivate(m) {
				t.Errorf("Client Subnet or COOKIE option sent upstream: %v", m.IsEdns0())
			}
			if tt.m.IsTsig() != nil && !hasPrivate(tt.m) && !bytes.Equal(got, in) {
				t.Errorf("signed query changed: got %x, want %x", got, in)
			}
			if len(m.Extra) != len(tt.m.Extra)+boolInt(tt.m.IsEdns0() == nil && tt.wantSize >= 0) {
				t.Errorf("got %d additional records from %d", len(m.Extra), len(tt.m.Extra))
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func optString(o *dns.OPT) string {
	var s []string
	for _, e := range o.Option {
		s = append(s, e.String())
	}
	return strings.Join(s, ";")
}

// upstreamOptions is optString for the options of o that may go upstream:
// all but Client Subnet and COOKIE.
func upstreamOptions(o *dns.OPT) string {
	var s []string
	for _, e := range o.Option {
		if e.Option() != dns.EDNS0SUBNET && e.Option() != dns.EDNS0COOKIE {
			s = append(s, e.String())
		}
	}
	return strings.Join(s, ";")
}

// header builds a 12-byte header.
func header(id, flags, qd, an, ns, ar uint16) []byte {
	return []byte{byte(id >> 8), byte(id), byte(flags >> 8), byte(flags),
		byte(qd >> 8), byte(qd), byte(an >> 8), byte(an), byte(ns >> 8), byte(ns), byte(ar >> 8), byte(ar)}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestPrepareQueryMalformed(t *testing.T) {
	q := mustHex("07 6578616d706c65 03 636f6d 00 0001 0001")
	opt := mustHex("00 0029 04d0 00000000 0000")
	long := bytes.Repeat(append([]byte{63}, bytes.Repeat([]byte{'a'}, 63)...), 4) // 256 bytes + root
	long254 := cat(bytes.Repeat(append([]byte{63}, bytes.Repeat([]byte{'a'}, 63)...), 3),
		[]byte{61}, bytes.Repeat([]byte{'b'}, 61), []byte{0}, mustHex("0001 0001")) // 255 bytes: valid
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"11 bytes", header(1, 0, 1, 0, 0, 0)[:11], ErrMalformed},
		{"header only", header(1, 0, 1, 0, 0, 0), ErrMalformed},
		{"QR set", cat(header(1, 0x8000, 1, 0, 0, 0), q), ErrNotQuery},
		{"opcode NOTIFY", cat(header(1, 4<<11, 1, 0, 0, 0), q), ErrNotQuery},
		{"opcode UPDATE", cat(header(1, 5<<11, 1, 0, 0, 0), q), ErrNotQuery},
		{"QD 0", cat(header(1, 0, 0, 0, 0, 0), q), ErrMalformed},
		{"QD 2", cat(header(1, 0, 2, 0, 0, 0), q, q), ErrMalformed},
		{"AN 1", cat(header(1, 0, 1, 1, 0, 0), q), ErrMalformed},
		{"NS 1", cat(header(1, 0, 1, 0, 1, 0), q), ErrMalformed},
		{"no qtype", cat(header(1, 0, 1, 0, 0, 0), q[:14]), ErrMalformed},
		{"cut name", cat(header(1, 0, 1, 0, 0, 0), q[:5]), ErrMalformed},
		{"label 64", cat(header(1, 0, 1, 0, 0, 0), []byte{64}, bytes.Repeat([]byte{'a'}, 64), []byte{0, 0, 1, 0, 1}), ErrMalformed},
		{"pointer in question", cat(header(1, 0, 1, 0, 0, 0), mustHex("c00c 0001 0001")), ErrMalformed},
		{"pointer after label", cat(header(1, 0, 1, 0, 0, 0), mustHex("0161 c00c 0001 0001")), ErrMalformed},
		{"reserved label 0x80", cat(header(1, 0, 1, 0, 0, 0), mustHex("8161 00 0001 0001")), ErrMalformed},
		{"name 257 bytes", cat(header(1, 0, 1, 0, 0, 0), long, []byte{0, 0, 1, 0, 1}), ErrMalformed},
		{"name 256 bytes", cat(header(1, 0, 1, 0, 0, 0), long[:192], []byte{62}, bytes.Repeat([]byte{'c'}, 62), []byte{0, 0, 1, 0, 1}), ErrMalformed},
		{"AR 1 missing", cat(header(1, 0, 1, 0, 0, 1), q), ErrMalformed},
		{"AR 2 one present", cat(header(1, 0, 1, 0, 0, 2), q, opt), ErrMalformed},
		{"two OPT", cat(header(1, 0, 1, 0, 0, 2), q, opt, opt), ErrMalformed},
		{"OPT not root", cat(header(1, 0, 1, 0, 0, 1), q, mustHex("0161 00 0029 04d0 00000000 0000")), ErrMalformed},
		{"OPT rdlength over", cat(header(1, 0, 1, 0, 0, 1), q, mustHex("00 0029 04d0 00000000 0005 000a0001")), ErrMalformed},
		{"OPT option over", cat(header(1, 0, 1, 0, 0, 1), q, mustHex("00 0029 04d0 00000000 0006 000a 0004 0102")), ErrMalformed},
		{"OPT option header cut", cat(header(1, 0, 1, 0, 0, 1), q, mustHex("00 0029 04d0 00000000 0002 000a")), ErrMalformed},
		{"OPT bad ECS", cat(header(1, 0, 1, 0, 0, 1), q, mustHex("00 0029 04d0 00000000 0008 0008 0004 0009 2000")), ErrMalformed},
		{"trailing byte", cat(header(1, 0, 1, 0, 0, 0), q, []byte{0}), ErrMalformed},
		{"trailing after OPT", cat(header(1, 0, 1, 0, 0, 1), q, opt, []byte{0, 0}), ErrMalformed},
		{"additional record cut", cat(header(1, 0, 1, 0, 0, 1), q, mustHex("00 0001 0001 00000000")), ErrMalformed},
		{"compression loop in additional", cat(header(1, 0, 1, 0, 0, 2), q, opt, mustHex("c021 0001 0001 00000000 0004 01020304")), ErrMalformed},
		{"pointer beyond end in additional", cat(header(1, 0, 1, 0, 0, 2), q, opt, mustHex("c0ff 0001 0001 00000000 0004 01020304")), ErrMalformed},
		{"bad label in additional", cat(header(1, 0, 1, 0, 0, 1), q, mustHex("40 0001 0001 00000000 0000")), ErrMalformed},
		{"too long", cat(header(1, 0, 1, 0, 0, 0), q, make([]byte, 65536)), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, q, err := PrepareQuery(dst, tt.pkt, 1252)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if !bytes.Equal(got, []byte("keep")) || q != (Query{}) {
				t.Errorf("got %x, %+v on error", got, q)
			}
			if _, err := TCReplyBytes(nil, tt.pkt); err == nil {
				t.Error("TCReplyBytes accepted it")
			}
		})
	}
	// Boundary: a 255-byte name is fine.
	if _, _, err := PrepareQuery(nil, cat(header(1, 0, 1, 0, 0, 0), long254), 1252); err != nil {
		t.Errorf("255-byte name: %v", err)
	}
}

func TestPrepareQueryTooBigForOPT(t *testing.T) {
	q := mustHex("07 6578616d706c65 03 636f6d 00 0001 0001")
	// A query with a filler record of a private type, 65530 bytes in all.
	base := cat(header(1, 0, 1, 0, 0, 1), q, mustHex("00 ff00 0001 00000000"))
	rdlen := 65530 - len(base) - 2
	pkt := cat(base, []byte{byte(rdlen >> 8), byte(rdlen)}, make([]byte, rdlen))
	if len(pkt) != 65530 {
		t.Fatalf("built %d bytes", len(pkt))
	}
	if _, _, err := PrepareQuery(nil, pkt, 1252); !errors.Is(err, ErrMalformed) {
		t.Errorf("got %v, want ErrMalformed (65541 bytes)", err)
	}
	if _, _, err := PrepareQuery(nil, pkt, 512); err != nil {
		t.Errorf("without rewrite: %v", err)
	}
}

// randName returns a random name of up to 255 wire bytes with odd bytes
// and mixed case.
func randName(r *rand.Rand) string {
	if r.IntN(20) == 0 {
		return "."
	}
	var labels []string
	wire := 1
	for n := 1 + r.IntN(8); n > 0; n-- {
		l := 1 + r.IntN(63)
		if r.IntN(3) > 0 {
			l = 1 + r.IntN(12)
		}
		if wire+l+1 > 255 {
			break
		}
		wire += l + 1
		var sb strings.Builder
		for range l {
			c := byte('a' + r.IntN(26))
			switch r.IntN(10) {
			case 0:
				c = byte(r.IntN(256))
			case 1, 2:
				c = byte('A' + r.IntN(26))
			}
			sb.WriteString(escapeByte(c))
		}
		labels = append(labels, sb.String())
	}
	return strings.Join(labels, ".") + "."
}

func escapeByte(c byte) string {
	switch {
	case c == '.' || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == '@' || c == '$':
		return `\` + string(c)
	case c < '!' || c > '~':
		return `\` + string([]byte{'0' + c/100, '0' + c/10%10, '0' + c%10})
	}
	return string(c)
}

// randQuery returns a random valid query.
func randQuery(r *rand.Rand) *dns.Msg {
	m := new(dns.Msg)
	m.Id = uint16(r.Uint32())
	m.RecursionDesired = r.IntN(2) == 0
	m.CheckingDisabled = r.IntN(4) == 0
	m.AuthenticatedData = r.IntN(3) == 0
	m.Zero = r.IntN(20) == 0
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeSRV, dns.TypeDS, dns.TypeRRSIG, dns.TypePTR, dns.TypeANY, uint16(r.Uint32())}
	classes := []uint16{dns.ClassINET, dns.ClassINET, dns.ClassCHAOS, dns.ClassANY}
	m.Question = []dns.Question{{Name: randName(r), Qtype: types[r.IntN(len(types))], Qclass: classes[r.IntN(len(classes))]}}
	if r.IntN(3) > 0 {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize([]uint16{0, 512, 1232, 1400, 4096, 65535, uint16(r.Uint32())}[r.IntN(7)])
		if r.IntN(2) == 0 {
			opt.SetDo()
		}
		if r.IntN(8) == 0 {
			opt.Hdr.Ttl |= r.Uint32() & 0x7fff // Z; the version stays 0
		}
		for range r.IntN(4) {
			switch r.IntN(6) {
			case 0:
				// A client cookie, alone or with a server cookie.
				c := []string{"0102030405060708", "a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8", "c1c2c3c4c5c6c7c8" + strings.Repeat("d9", 32)}[r.IntN(3)]
				opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: c})
			case 1:
				opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, r.IntN(100))})
			case 2:
				opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
			case 3:
				opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: uint16(65001 + r.IntN(500)), Data: []byte{1, 2, 3}})
			case 4:
				opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{10, 1, 2, 0}})
			case 5:
				opt.Option = append(opt.Option, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE})
			}
		}
		m.Extra = append(m.Extra, opt)
		m.Rcode = r.IntN(16) // extended bits travel in the OPT
		if r.IntN(8) == 0 {
			m.Rcode |= r.IntN(256) << 4
		}
	}
	if r.IntN(10) == 0 {
		m.Extra = append(m.Extra, &dns.TSIG{
			Hdr:       dns.RR_Header{Name: "key.example.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
			Algorithm: dns.HmacSHA256, MACSize: 2, MAC: "0011", TimeSigned: 1, Fudge: 300, OrigId: m.Id,
		})
	}
	return m
}

// TestPrepareQueryPathsAgree checks PrepareQuery against *dns.Msg on many
// generated queries: the output byte-identical to Unpack, Client Subnet and
// COOKIE removal, SetPayloadSize and Pack, the Query in line with ClientLimit, and
// the same in place.
func TestPrepareQueryPathsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []uint16{0, 512, 513, 1232, 1252, 4096, 65535}
	wire := 0
	const n = 20000
	for i := range n {
		m := randQuery(r)
		pkt, err := m.Pack()
		if err != nil {
			t.Fatalf("packing %v: %v", m, err)
		}
		size := sizes[i%len(sizes)]
		got, q, err := PrepareQuery(nil, pkt, size)
		if err != nil {
			t.Fatalf("PrepareQuery(%x): %v", pkt, err)
		}
		if q.Limit != ClientLimit(m) || q.HadOPT != (m.IsEdns0() != nil) || q.ID != m.Id {
			t.Fatalf("query %v: got %+v", m, q)
		}
		signed := m.IsTsig() != nil
		if signed && !hasPrivate(m) && !bytes.Equal(got, pkt) {
			t.Fatalf("signed query %x changed to %x", pkt, got)
		}
		in := append(bytes.Clone(pkt), make([]byte, 11)...)[:len(pkt)]
		if inPlace, _, err := PrepareQuery(in[:0], in, size); err != nil || !bytes.Equal(inPlace, got) {
			t.Fatalf("in place: got %x, %v; want %x", inPlace, err, got)
		}
		// Independent reference: Unpack, Client Subnet and COOKIE
		// removed, SetPayloadSize unless signed, Pack.
		ref := unpack(t, pkt)
		dropPrivate(ref)
		if size > MinUDPSize && !signed {
			SetPayloadSize(ref, size)
		}
		if b := pack(t, ref); !bytes.Equal(b, got) {
			t.Fatalf("query %x size %d:\ngot       %x\nreference %x", pkt, size, got, b)
		}
		if s, _ := scanQuery(pkt); s.simple {
			wire++
		}
	}
	t.Logf("%d of %d queries took the wire path", wire, n)
	if wire < n/2 {
		t.Errorf("only %d of %d queries took the wire path", wire, n)
	}
}

func TestPrepareQueryInPlace(t *testing.T) {
	for _, m := range []*dns.Msg{
		newQuery("example.com.", dns.TypeA),
		withOPT(newQuery("example.com.", dns.TypeA), 4096, true),
		withOPT(newQuery("example.com.", dns.TypeA), 4096, true,
			&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{10, 1, 2, 0}}),
	} {
		pkt := pack(t, m)
		want, _, err := PrepareQuery(nil, pkt, 1252)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(pkt), len(pkt)+64)
		copy(buf, pkt)
		got, _, err := PrepareQuery(buf[:0], buf, 1252)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("in place: got %x, want %x", got, want)
		}
	}
}

func TestPrepareQueryAllocs(t *testing.T) {
	for _, m := range []*dns.Msg{
		newQuery("www.example.com.", dns.TypeA),
		withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true,
			&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}),
	} {
		pkt := pack(t, m)
		buf := make([]byte, 0, 512)
		n := testing.AllocsPerRun(100, func() {
			if _, _, err := PrepareQuery(buf, pkt, 1252); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("%v: got %v allocations, want 0", m.Question[0], n)
		}
	}
}

func TestTCReplyBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		m := randQuery(r)
		pkt := pack(t, m)
		got, err := TCReplyBytes([]byte{0xee}, pkt)
		if err != nil {
			t.Fatalf("TCReplyBytes(%x): %v", pkt, err)
		}
		// dnscrypt-proxy 1.x: byte 2 |= 0x82, byte 3 |= 0x80, nothing else.
		want := append([]byte{0xee}, pkt...)
		want[1+2] |= 0x82
		want[1+3] |= 0x80
		if !bytes.Equal(got, want) {
			t.Fatalf("got %x, want %x", got, want)
		}
		// The *dns.Msg version gives the same message.
		if b := pack(t, TCReply(m)); !bytes.Equal(b, got[1:]) {
			t.Fatalf("TCReply packs to %x, TCReplyBytes gives %x", b, got[1:])
		}
		rep := unpack(t, got[1:])
		if (rep.IsEdns0() != nil) != (m.IsEdns0() != nil) {
			t.Fatalf("reply OPT %v, query OPT %v", rep.IsEdns0(), m.IsEdns0())
		}
		if opt := rep.IsEdns0(); opt != nil && opt.UDPSize() != m.IsEdns0().UDPSize() {
			t.Fatalf("reply OPT size %d, client's %d", opt.UDPSize(), m.IsEdns0().UDPSize())
		}
	}
}

func TestTCReplyBytesVector(t *testing.T) {
	// dig +cookie example.com MX: RD, AD; OPT 1232, cookie.
	in := mustHex("abcd 0120 0001 0000 0000 0001 07 6578616d706c65 03 636f6d 00 000f 0001" +
		"00 0029 04d0 00000000 000c 000a 0008 0102030405060708")
	want := mustHex("abcd 83a0 0001 0000 0000 0001 07 6578616d706c65 03 636f6d 00 000f 0001" +
		"00 0029 04d0 00000000 000c 000a 0008 0102030405060708")
	got, err := TCReplyBytes(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
	// In place.
	buf := bytes.Clone(in)
	if got, _ := TCReplyBytes(buf[:0], buf); !bytes.Equal(got, want) {
		t.Errorf("in place: got %x, want %x", got, want)
	}
	n := testing.AllocsPerRun(100, func() { _, _ = TCReplyBytes(buf[:0], in) })
	if n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}
