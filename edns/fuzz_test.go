package edns

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Annotated byte seeds, shared by the fuzzers.
var (
	// dig example.com MX +cookie: RD AD, OPT 1232 DO, cookie option.
	seedDig = mustHex("abcd 0120 0001 0000 0000 0001" +
		"07 6578616d706c65 03 636f6d 00 000f 0001" +
		"00 0029 04d0 00008000 000c 000a 0008 0102030405060708")
	// host -t A example.com: no OPT.
	seedPlain = mustHex("1234 0100 0001 0000 0000 0000 07 6578616d706c65 03 636f6d 00 0001 0001")
	// OPT with a Client Subnet option: removed through *dns.Msg.
	seedECS = mustHex("0001 0100 0001 0000 0000 0001 01 61 00 0001 0001" +
		"00 0029 1000 00000000 000b 0008 0007 0001 18 00 c00002")
	// OPT then a record with a compression pointer into the question.
	seedTwo = mustHex("0002 0100 0001 0000 0000 0002 01 61 00 0001 0001" +
		"00 0029 1000 00000000 0000" +
		"c00c 0001 0001 00000000 0004 7f000001")
	// Compression loop (a pointer to itself) in the additional section.
	seedLoop = mustHex("0003 0100 0001 0000 0000 0002 01 61 00 0001 0001" +
		"00 0029 1000 00000000 0000" +
		"c01e 0001 0001 00000000 0004 7f000001")
	// A TSIG-like record and no OPT: the OPT goes in through *dns.Msg.
	seedNoOPT = mustHex("0004 0100 0001 0000 0000 0001 01 61 00 0001 0001" +
		"03 6b6579 00 00fa 00ff 00000000 001d" +
		"0b 686d61632d736861323536 00 000000000001 012c 0000 0004 00000000")
)

func FuzzPrepareQuery(f *testing.F) {
	for _, s := range [][]byte{seedDig, seedPlain, seedECS, seedTwo, seedLoop, seedNoOPT, seedPlain[:20], nil,
		seedCookieOnly, seedVersion1, seedBadCookie, seedNotify, seedTwoQuestions} {
		for _, size := range []uint16{0, 512, 1252, 65535} {
			f.Add(s, size)
		}
	}
	f.Fuzz(func(t *testing.T, pkt []byte, size uint16) {
		got, q, err := PrepareQuery(nil, pkt, size)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotQuery) &&
				!errors.Is(err, ErrBadVersion) && !errors.Is(err, ErrCookieOnly) {
				t.Fatalf("got error %v, want one of the sentinels", err)
			}
			if plainQuery(pkt) {
				t.Fatalf("rejected %x, a plain query: %v", pkt, err)
			}
			return
		}
		in := unpack(t, pkt)
		out := unpack(t, got)
		s, _ := scanQuery(pkt)
		rewrite := size > MinUDPSize && !s.signed
		inECS, inCookie := hasECS(in), hasCookie(in)
		// The reference: Unpack, Client Subnet and COOKIE removed,
		// SetPayloadSize if the size is rewritten, Pack.
		var ref []byte
		if rewrite || inECS || inCookie {
			m := unpack(t, pkt)
			dropPrivate(m)
			if rewrite {
				SetPayloadSize(m, size)
			}
			if ref, err = m.Pack(); err != nil {
				t.Fatalf("reference cannot pack %v: %v", m, err)
			}
			// The same message, structured options normalised on both
			// sides.
			cg, ok1 := canonical(got)
			cr, ok2 := canonical(ref)
			if !ok1 || !ok2 || !bytes.Equal(cg, cr) {
				t.Fatalf("got %x, reference %x", got, ref)
			}
		}
		want := bytes.Clone(pkt)
		switch {
		case inECS || (rewrite || inCookie) && !s.bare:
			want = ref
		case inCookie && s.simple:
			// The cookies cut out on the wire, the other options opaque.
			want = ref
		case inCookie:
			// Structured options kept as sent: the canonical comparison
			// above is all there is.
			want = got
		case !rewrite:
		case s.hasOPT:
			want[s.opt.hdr+2], want[s.opt.hdr+3] = byte(size>>8), byte(size)
		default:
			want[11] = 1
			want = append(want, 0, 0, 41, byte(size>>8), byte(size), 0, 0, 0, 0, 0, 0)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %x, want %x", got, want)
		}
		if len(got) > MaxTCPSize {
			t.Fatalf("got %d bytes", len(got))
		}
		if out.MsgHdr != in.MsgHdr {
			t.Fatalf("got header %+v, want %+v", out.MsgHdr, in.MsgHdr)
		}
		// Header (but ARCOUNT) and question bytes pass unchanged.
		_, qEnd, _ := scanQuestion(pkt, headerLen)
		if !bytes.Equal(got[:10], pkt[:10]) || !bytes.Equal(got[12:qEnd], pkt[12:qEnd]) {
			t.Fatalf("header or question changed: got %x, want %x", got[:qEnd], pkt[:qEnd])
		}
		inOPT := in.IsEdns0()
		if q.ID != in.Id || q.HadOPT != (inOPT != nil) || q.Limit != ClientLimit(in) {
			t.Fatalf("got %+v for %v", q, in)
		}
		n := countOPT(out)
		opt := out.IsEdns0()
		switch {
		case size > MinUDPSize && !s.signed:
			if n != 1 || opt.UDPSize() != size {
				t.Fatalf("got %d OPT (%v), want one with size %d", n, opt, size)
			}
		case inOPT == nil:
			if n != 0 {
				t.Fatalf("got %d OPT, want none", n)
			}
		default:
			if n != 1 || opt.UDPSize() != inOPT.UDPSize() {
				t.Fatalf("got %d OPT (%v), want the client's", n, opt)
			}
		}
		if inOPT != nil {
			if opt.Hdr.Ttl != inOPT.Hdr.Ttl || optString(opt) != upstreamOptions(inOPT) {
				t.Fatalf("got OPT %v, want %v with another size and no Client Subnet", opt, inOPT)
			}
		}
		if hasPrivate(out) {
			t.Fatalf("Client Subnet or COOKIE option sent upstream: %v", opt)
		}
		// The Query remembers the first client cookie.
		wantCookie := firstCookie(in)
		if (q.cookie == cookieClient) != (wantCookie != "") ||
			wantCookie != "" && hex.EncodeToString(q.cookieBytes[:clientCookieLen]) != wantCookie[:2*clientCookieLen] {
			t.Fatalf("got cookie %d %x, query's %q", q.cookie, q.cookieBytes, wantCookie)
		}
	})
}

// firstCookie returns the data of the first COOKIE option of m in hex, or
// "".
func firstCookie(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if c, ok := o.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}

// plainQuery reports whether pkt is a query that PrepareQuery must accept,
// judged by miekg/dns alone: it unpacks and packs back to the same bytes (so
// no compression, no trailing bytes, nothing miekg/dns normalises), has QR
// clear, opcode QUERY, one question, no answer or authority records and at
// most one OPT record, owned by the root, of version 0, with COOKIE options
// of a valid length, and has room for an added OPT.
func plainQuery(pkt []byte) bool {
	m := new(dns.Msg)
	if m.Unpack(pkt) != nil {
		return false
	}
	if b, err := m.Pack(); err != nil || !bytes.Equal(b, pkt) {
		return false
	}
	if m.Response || m.Opcode != dns.OpcodeQuery || len(m.Question) != 1 || len(m.Answer)+len(m.Ns) != 0 {
		return false
	}
	n := 0
	for _, rr := range m.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			if opt.Hdr.Name != "." || opt.Version() != 0 {
				return false
			}
			for _, o := range opt.Option {
				if c, ok := o.(*dns.EDNS0_COOKIE); ok && !validCookieLen(len(c.Cookie)/2) {
					return false
				}
			}
			n++
		}
	}
	return n <= 1 && len(pkt)+11 <= MaxTCPSize
}

// TestPlainQuery keeps the fuzzer's acceptance rule honest: it must hold
// for ordinary queries, or FuzzPrepareQuery checks no rejection.
func TestPlainQuery(t *testing.T) {
	for _, tt := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"dig", seedDig, true},
		{"host", seedPlain, true},
		{"ECS", seedECS, true},
		{"TSIG-like", seedNoOPT, true},
		{"compressed owner", seedTwo, false},
		{"loop", seedLoop, false},
		{"cut", seedPlain[:20], false},
		{"trailing byte", append(bytes.Clone(seedPlain), 0), false},
		{"answer", func() []byte { b := bytes.Clone(seedPlain); b[2] |= 0x80; return b }(), false},
	} {
		if got := plainQuery(tt.pkt); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// queryFor builds the client query that answer answers: its ID and
// question, RD set, and an OPT record with clientSize unless that is 0,
// holding a COOKIE option with a client cookie if cookie is not 0.
func queryFor(answer []byte, clientSize uint16, cookie uint8) []byte {
	q := []byte{0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	question := []byte{0, 0, 1, 0, 1} // ". A IN"
	if len(answer) >= headerLen {
		q[0], q[1] = answer[0], answer[1]
		if _, end, err := scanQuestion(answer, headerLen); err == nil {
			question = answer[headerLen:end]
		}
	}
	q = append(q, question...)
	if clientSize != 0 {
		q[11] = 1
		q = append(q, 0, 0, 41, byte(clientSize>>8), byte(clientSize), 0, 0, 0x80, 0, 0, 0)
		if cookie != 0 {
			q[len(q)-1] = 12
			q = append(q, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8)
		}
	}
	return q
}

// fuzzCookies stamps the fuzzers' queries.
var fuzzCookies = NewCookies([16]byte{0xf0, 0xf1})

func FuzzPrepareAnswer(f *testing.F) {
	qDig := withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true)
	qPlain := newQuery("www.example.com.", dns.TypeA)
	theirs := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708f1f2f3f4f5f6f7f8"}
	for _, query := range []*dns.Msg{qDig, qPlain} {
		size := uint16(0)
		if query.IsEdns0() != nil {
			size = 1232
		}
		for _, n := range []int{0, 3, 200} {
			a := answerFor(query, n, true)
			f.Add(pack(f, a), size, false, uint8(0))
			f.Add(pack(f, a), size, true, uint8(0))
			f.Add(pack(f, a), size, false, uint8(2))
			a.IsEdns0().Option = []dns.EDNS0{theirs, &dns.EDNS0_PADDING{Padding: make([]byte, 5)}}
			f.Add(pack(f, a), size, false, uint8(1))
			f.Add(pack(f, a), size, false, uint8(2))
			a.Extra = nil
			f.Add(pack(f, a), size, false, uint8(0))
			f.Add(pack(f, a), size, false, uint8(2))
		}
		f.Add(pack(f, txtAnswer(query, 13, 254, true)), size, false, uint8(0))
	}
	f.Add(header(0x1234, 0x8185, 1, 0, 0, 0), uint16(0), false, uint8(0))
	f.Add(header(0x1234, 0x8185, 1, 0, 0, 0), uint16(1232), false, uint8(2))
	f.Add(mustHex("abcd 8180 0001 0001 0000 0002 07 6578616d706c65 03 636f6d 00 000f 0001"+
		"c00c 000f 0001 00000e10 0004 000a c00c"+
		"00 0029 04d0 00008000 000c 000a 0008 0102030405060708"+
		"c00c 0001 0001 00000e10 0004 c0000201"), uint16(1232), false, uint8(2))
	f.Fuzz(func(t *testing.T, answer []byte, clientSize uint16, tcp bool, cookie uint8) {
		_, q, err := PrepareQuery(nil, queryFor(answer, clientSize, cookie), DefaultPayloadSize)
		if err != nil {
			t.Fatalf("query for the answer: %v", err)
		}
		if cookie > 1 {
			fuzzCookies.Stamp(&q, netip.IPv6Loopback(), time.Unix(int64(cookie), 0))
		}
		if tcp {
			q.Limit = MaxTCPSize
		}
		got, err := PrepareAnswer(nil, answer, q)
		if err != nil {
			return
		}
		if len(got) > q.Limit || len(got) < headerLen {
			t.Fatalf("got %d bytes, limit %d", len(got), q.Limit)
		}
		if be16(got) != q.ID || got[2]&0x80 == 0 {
			t.Fatalf("got header %x", got[:headerLen])
		}
		// No cookie but ours, whatever the answer.
		if out := new(dns.Msg); out.Unpack(got) == nil {
			ours := hex.EncodeToString(q.cookieBytes[:])
			for _, c := range answerCookies(t, got) {
				if q.cookie != cookieStamped || !q.HadOPT || c != ours {
					t.Fatalf("got cookie %s, query %+v", c, q)
				}
			}
		}
		if bytes.Equal(got, answer) {
			return
		}
		// Changed: then we built it, and it must keep the promises whenever
		// the answer parsed, unless names in the answer read the header or
		// past their record (see PrepareAnswer).
		if new(dns.Msg).Unpack(answer) != nil {
			return
		}
		if err := answerProblem(answer, got, q); err != nil && !namesAbuseLayout(answer) {
			t.Fatal(err)
		}
	})
}

func FuzzTCReplyBytes(f *testing.F) {
	for _, s := range [][]byte{seedDig, seedPlain, seedECS, seedTwo, seedLoop, seedNoOPT, seedPlain[:20], nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		got, err := TCReplyBytes(nil, pkt)
		s, _, cerr := checkQuery(pkt)
		if cerr != nil && err == nil {
			t.Fatalf("TCReplyBytes accepted a query PrepareQuery rejects: %v", cerr)
		}
		if err != nil {
			if cerr == nil && s.bare {
				t.Fatalf("TCReplyBytes rejected a simple valid query: %v", err)
			}
			return
		}
		if s.bare {
			// dnscrypt-proxy 1.x: the query with two header bytes or'ed.
			want := bytes.Clone(pkt)
			want[2] |= 0x82
			want[3] |= 0x80
			if !bytes.Equal(got, want) {
				t.Fatalf("got %x, want %x", got, want)
			}
		}
		m := unpack(t, pkt)
		r := unpack(t, got)
		ref := TCReply(m)
		if r.MsgHdr != ref.MsgHdr || len(r.Answer)+len(r.Ns) != 0 || len(r.Question) != 1 || r.Question[0] != m.Question[0] {
			t.Fatalf("got %v, TCReply gives %v", r, ref)
		}
		if (r.IsEdns0() == nil) != (m.IsEdns0() == nil) {
			t.Fatalf("got OPT %v, query had %v", r.IsEdns0(), m.IsEdns0())
		}
	})
}

// namesAbuseLayout reports whether a name in answer reads a header byte that
// PrepareAnswer may rewrite (flags and RCODE in bytes 2 and 3, the answer,
// authority and additional counts in bytes 6 to 11) through a
// compression pointer below offset 12, directly or through a chain, or
// reads past the end of its own record: patterns that no conforming encoder
// produces, and that cutting records on the wire may break. Only names
// count, where they are: owner names as scanRR walks the records, and names
// in RDATA as miekg/dns reads them. A c0xx pair in other bytes (an A record
// 192.0.2.1) does not. A name reading into a later record counts even if
// that record is kept.
func namesAbuseLayout(answer []byte) bool {
	off := headerLen
	if be16(answer[4:]) != 0 {
		var err error
		// The question name has no pointer: PrepareAnswer rejects one.
		if _, off, err = scanQuestion(answer, headerLen); err != nil {
			return false
		}
	}
	// Copies with other values in those bytes: a record reads none of
	// them if it reads the same from all three.
	var flipped [2][]byte
	for j, mask := range []byte{0xFF, 0x01} {
		flipped[j] = bytes.Clone(answer)
		for _, i := range []int{2, 3, 6, 7, 8, 9, 10, 11} {
			flipped[j][i] ^= mask
		}
	}
	an, ns, ar := int(be16(answer[6:])), int(be16(answer[8:])), int(be16(answer[10:]))
	for i := range an + ns + ar {
		r, err := scanRR(answer, off)
		if err != nil {
			return false
		}
		if readsHeader(answer, flipped, r.start) {
			return true
		}
		// The message cut after record i must still parse.
		p := bytes.Clone(answer[:r.end])
		k := i + 1
		kan := min(k, an)
		kns := min(k-kan, ns)
		p[6], p[7] = byte(kan>>8), byte(kan)
		p[8], p[9] = byte(kns>>8), byte(kns)
		p[10], p[11] = byte((k-kan-kns)>>8), byte(k-kan-kns)
		if new(dns.Msg).Unpack(p) != nil {
			return true
		}
		off = r.end
	}
	return false
}

// readsHeader reports whether the record at off in msg reads differently
// from the copies in flipped, which differ from msg in header bytes only.
func readsHeader(msg []byte, flipped [2][]byte, off int) bool {
	want, _, werr := dns.UnpackRR(msg, off)
	for _, f := range flipped {
		got, _, err := dns.UnpackRR(f, off)
		if (err == nil) != (werr == nil) || err == nil && got.String() != want.String() {
			return true
		}
	}
	return false
}

func TestNamesAbuseLayout(t *testing.T) {
	const (
		question = "03 777777 07 6578616d706c65 03 636f6d 00 0001 0001" // www.example.com. A IN, ends at 33
		opt      = "00 0029 04d0 00000000 0000"
	)
	tests := []struct {
		name   string
		answer string
		want   bool
	}{
		{"A 192.0.2.1", "1234 8180 0001 0001 0000 0000" + question +
			"c00c 0001 0001 00000e10 0004 c0000201", false},
		{"A 192.0.0.5, then OPT", "1234 8180 0001 0001 0000 0001" + question +
			"c00c 0001 0001 00000e10 0004 c0000005" + opt, false},
		{"owner name is ARCOUNT", "1234 8180 0001 0001 0000 0000" + question +
			"c00a 0001 0001 00000e10 0004 0a000001", true},
		{"owner name is the RCODE byte", "1234 8100 0001 0001 0000 0000" + question +
			"c003 0001 0001 00000e10 0004 0a000001", true},
		{"owner name is QDCOUNT, never rewritten", "1234 8180 0001 0001 0000 0000" + question +
			"c004 0001 0001 00000e10 0004 0a000001", false},
		{"MX exchange is ARCOUNT", "1234 8180 0001 0001 0000 0000" + question +
			"c00c 000f 0001 00000e10 0004 000a c00a", true},
		{"owner name through a pointer in A RDATA", "1234 8180 0001 0002 0000 0000" + question +
			"c00c 0001 0001 00000e10 0004 c00a0000" + // RDATA at 45
			"c02d 0001 0001 00000e10 0004 01020304", true},
		{"owner name in the next record", "1234 8180 0001 0002 0000 0000" + question +
			"c031 0001 0001 00000e10 0004 01020304" + // points to the next owner, at 49
			"c00c 0001 0001 00000e10 0004 01020304", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := mustHex(tt.answer)
			unpack(t, answer)
			if got := namesAbuseLayout(answer); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// Seeds of refused queries, shared by the fuzzers.
var (
	// dig +header-only +cookie: no question, a client cookie.
	seedCookieOnly = mustHex("abcd 0100 0000 0000 0000 0001 00 0029 04d0 00000000 000c 000a 0008 0102030405060708")
	// dig +edns=1 +noednsneg: BADVERS.
	seedVersion1 = mustHex("abcd 0120 0001 0000 0000 0001 01 61 00 0001 0001 00 0029 04d0 00018000 0000")
	// A COOKIE option of 5 bytes: FORMERR.
	seedBadCookie = mustHex("abcd 0100 0001 0000 0000 0001 01 61 00 0001 0001 00 0029 04d0 00000000 0009 000a 0005 0102030405")
	// NOTIFY with an SOA record: NOTIMP.
	seedNotify = mustHex("abcd 2400 0001 0001 0000 0000 01 61 00 0006 0001 c00c 0006 0001 00000000 0016 00 00 00000001 00000001 00000001 00000001 00000001")
	// Two questions and an OPT: FORMERR without the questions.
	seedTwoQuestions = mustHex("abcd 0100 0002 0000 0000 0001 01 61 00 0001 0001 01 62 c00c 0001 0001 00 0029 04d0 00008000 0000")
	// Counts far beyond the message, a question name pointing at itself.
	seedHugeCounts = mustHex("abcd 0100 ffff ffff ffff ffff c00c 0001 0001 00 0029 04d0 00008000 0000")
	// A cookie-only query with a TSIG-like record after the OPT.
	seedCookieSigned = mustHex("abcd 0100 0000 0000 0000 0002 00 0029 04d0 00000000 000c 000a 0008 0102030405060708" +
		"03 6b6579 00 00fa 00ff 00000000 0000")
)

func FuzzErrorReply(f *testing.F) {
	for _, s := range [][]byte{seedDig, seedPlain, seedECS, seedTwo, seedLoop, seedNoOPT, seedPlain[:20], nil,
		seedCookieOnly, seedVersion1, seedBadCookie, seedNotify, seedTwoQuestions, seedHugeCounts, seedCookieSigned} {
		f.Add(s, true)
		f.Add(s, false)
	}
	client, now := netip.MustParseAddr("192.0.2.1"), time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, pkt []byte, withCookies bool) {
		var c *Cookies
		if withCookies {
			c = fuzzCookies
		}
		got, ok := ErrorReply([]byte{0xee}, pkt, c, client, now)
		header := len(pkt) >= headerLen && pkt[2]&0x80 == 0
		if ok != header || got[0] != 0xee || !ok && len(got) != 1 {
			t.Fatalf("got %x, %v for %x", got, ok, pkt)
		}
		if !ok {
			return
		}
		got = got[1:]
		if len(got) > 310 {
			t.Fatalf("got %d bytes", len(got))
		}
		m := new(dns.Msg)
		if err := m.Unpack(got); err != nil {
			t.Fatalf("unpacking %x: %v", got, err)
		}
		// Header: ID, opcode, RD and CD echoed, QR and RA set.
		if be16(got) != be16(pkt) || got[2] != 0x80|pkt[2]&0x79 || got[3]&0xf0 != 0x80|pkt[3]&0x10 {
			t.Fatalf("got header %x for %x", got[:headerLen], pkt[:headerLen])
		}
		// The RCODE is the one for what PrepareQuery says.
		_, _, err := PrepareQuery(nil, pkt, DefaultPayloadSize)
		want := dns.RcodeFormatError
		switch {
		case pkt[2]&0x78 != 0:
			want = dns.RcodeNotImplemented
		case errors.Is(err, ErrBadVersion):
			want = dns.RcodeBadVers
		case errors.Is(err, ErrCookieOnly) && c != nil:
			want = dns.RcodeSuccess
		}
		if m.Rcode != want {
			t.Fatalf("got RCODE %d, want %d (%v)", m.Rcode, want, err)
		}
		if len(m.Answer)+len(m.Ns) != 0 || len(m.Question) > 1 || len(m.Extra) > 1 {
			t.Fatalf("got %v", m)
		}
		// The question: the query's, whenever it has one that parses.
		_, qEnd, qerr := scanQuestion(pkt, headerLen)
		wantQ := be16(pkt[4:]) == 1 && qerr == nil
		if wantQ != (len(m.Question) == 1) || wantQ && !bytes.Equal(got[headerLen:qEnd], pkt[headerLen:qEnd]) {
			t.Fatalf("got question %v for %x", m.Question, pkt)
		}
		// The OPT record: where miekg/dns reads the query, one if and only
		// if the query has one in its additional section.
		opt := m.IsEdns0()
		if in := new(dns.Msg); in.Unpack(pkt) == nil {
			var opts []*dns.OPT
			for _, rr := range in.Extra {
				if o, ok := rr.(*dns.OPT); ok {
					opts = append(opts, o)
				}
			}
			usable := len(opts) == 1 && opts[0].Hdr.Name == "."
			if usable != (opt != nil) {
				t.Fatalf("got OPT %v, query has %v", opt, opts)
			}
			if usable && opt.Do() != opts[0].Do() {
				t.Fatalf("got DO %v, query %v", opt.Do(), opts[0].Do())
			}
		}
		if want == dns.RcodeBadVers && opt == nil {
			t.Fatal("BADVERS without OPT")
		}
		if opt == nil {
			return
		}
		if opt.Version() != 0 || opt.UDPSize() != DefaultPayloadSize || opt.Hdr.Ttl&0x7fff != 0 {
			t.Fatalf("got OPT %v", opt)
		}
		// A cookie only in the answer to a cookie-only query: the client
		// cookie of its first COOKIE option and ours.
		if want != dns.RcodeSuccess {
			if len(opt.Option) != 0 {
				t.Fatalf("got options %v", opt.Option)
			}
			return
		}
		var cc [clientCookieLen]byte
		if in := new(dns.Msg); in.Unpack(pkt) == nil {
			b, _ := hex.DecodeString(firstCookie(in))
			copy(cc[:], b)
		} else {
			s, _ := scanQuery(pkt)
			cc = s.client
		}
		var ours [clientCookieLen + serverCookieLen]byte
		copy(ours[:], cc[:])
		c.serverCookie((*[serverCookieLen]byte)(ours[clientCookieLen:]), &cc, client, uint32(now.Unix()))
		if cs := answerCookies(t, got); len(opt.Option) != 1 || len(cs) != 1 || cs[0] != hex.EncodeToString(ours[:]) {
			t.Fatalf("got options %v, want cookie %x", opt.Option, ours)
		}
	})
}
