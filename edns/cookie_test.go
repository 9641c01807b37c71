package edns

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestSipHash24 checks SipHash-2-4 against the reference vectors (key 00 01
// .. 0f, message 00 01 .. n-1): n = 0, 1, 8 from the reference
// implementation's vectors.h, n = 15 from Appendix A of the SipHash paper.
func TestSipHash24(t *testing.T) {
	var key [16]byte
	var msg [15]byte
	for i := range key {
		key[i] = byte(i)
	}
	for i := range msg {
		msg[i] = byte(i)
	}
	c := NewCookies(key)
	for _, tt := range []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5},
	} {
		if got := sipHash24(c.k0, c.k1, msg[:tt.n]); got != tt.want {
			t.Errorf("%d bytes: got %#x, want %#x", tt.n, got, tt.want)
		}
	}
}

// rfc9018Vectors are the examples of RFC 9018 Appendix A: the server secret,
// the client's address, the COOKIE option of its query, the time of the
// answer and the COOKIE option of the answer. A.3's query carries a server
// cookie with reserved bytes set; the answer's new server cookie has them
// zero. A.4's answer is made with the new secret after a rollover.
var rfc9018Vectors = []struct {
	name   string
	secret string
	client string
	query  string
	now    int64
	answer string
}{
	{"A.1", "e5e973e5a6b2a43f48e7dc849e37bfcf", "198.51.100.100",
		"2464c4abcf10c957", 1559731985,
		"2464c4abcf10c957010000005cf79f111f8130c3eee29480"},
	{"A.2", "e5e973e5a6b2a43f48e7dc849e37bfcf", "198.51.100.100",
		"2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559734385,
		"2464c4abcf10c957010000005cf7a871d4a564a1442aca77"},
	{"A.3", "e5e973e5a6b2a43f48e7dc849e37bfcf", "203.0.113.203",
		"fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5", 1559734700,
		"fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e"},
	{"A.4", "445536bcd2513298075a5d379663c962", "2001:db8:220:1:59de:d0f4:8769:82b8",
		"22681ab97d52c298010000005cf7c57926556bd0934c72f8", 1559741961,
		"22681ab97d52c298010000005cf7c609a6bb79d16625507a"},
}

func mustCookies(tb testing.TB, secret string) *Cookies {
	tb.Helper()
	b, err := hex.DecodeString(secret)
	if err != nil || len(b) != 16 {
		tb.Fatalf("secret %q", secret)
	}
	return NewCookies([16]byte(b))
}

// cookieQuery is dig's query for www.example.com A with a COOKIE option
// holding cookie (hex) in an OPT record of size 1232 with DO.
func cookieQuery(tb testing.TB, cookie string) []byte {
	tb.Helper()
	return pack(tb, withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true,
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie}))
}

// answerCookies returns the data of the COOKIE options of the OPT records
// of b, in hex.
func answerCookies(tb testing.TB, b []byte) []string {
	tb.Helper()
	var c []string
	m := unpack(tb, b)
	for _, s := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range s {
			if opt, ok := rr.(*dns.OPT); ok {
				for _, o := range opt.Option {
					if o, ok := o.(*dns.EDNS0_COOKIE); ok {
						c = append(c, o.Cookie)
					}
				}
			}
		}
	}
	return c
}

// TestRFC9018Vectors runs each example of RFC 9018 through the proxy: the
// client's query loses its cookie upstream, and its answer carries the
// COOKIE option of the example byte for byte.
func TestRFC9018Vectors(t *testing.T) {
	for _, v := range rfc9018Vectors {
		t.Run(v.name, func(t *testing.T) {
			c := mustCookies(t, v.secret)
			query := cookieQuery(t, v.query)
			up, q, err := PrepareQuery(nil, query, DefaultPayloadSize)
			if err != nil {
				t.Fatal(err)
			}
			if m := unpack(t, up); hasCookie(m) {
				t.Errorf("cookie sent upstream: %v", m.IsEdns0())
			}
			if q.cookie != cookieClient || hex.EncodeToString(q.cookieBytes[:8]) != v.query[:16] {
				t.Errorf("got cookie state %d %x, want the client cookie %s", q.cookie, q.cookieBytes, v.query[:16])
			}
			c.Stamp(&q, netip.MustParseAddr(v.client), time.Unix(v.now, 0))
			ans := pack(t, answerFor(unpack(t, query), 2, true))
			got, err := PrepareAnswer(nil, ans, q)
			if err != nil {
				t.Fatal(err)
			}
			if c := answerCookies(t, got); len(c) != 1 || c[0] != v.answer {
				t.Errorf("got cookies %q, want [%s]", c, v.answer)
			}
			// Only the cookie was added, at the end of the OPT record.
			want := cat(ans[:len(ans)-2], []byte{0, cookieOptLen}, mustHex("000a 0018"+v.answer))
			if !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
		})
	}
}

func TestStamp(t *testing.T) {
	v := rfc9018Vectors[0]
	c := mustCookies(t, v.secret)
	now := time.Unix(v.now, 0)
	ip := netip.MustParseAddr(v.client)
	prepared := func(tb testing.TB, cookie string) Query {
		if cookie == "" {
			return mustPrepare(tb, pack(tb, withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true)), DefaultPayloadSize)
		}
		return mustPrepare(tb, cookieQuery(tb, cookie), DefaultPayloadSize)
	}
	stamped := func(c *Cookies, ip netip.Addr, now time.Time) Query {
		q := prepared(t, v.query)
		c.Stamp(&q, ip, now)
		return q
	}
	want := stamped(c, ip, now)
	if got := hex.EncodeToString(want.cookieBytes[:]); want.cookie != cookieStamped || got != v.answer {
		t.Fatalf("got %d %s, want %s", want.cookie, got, v.answer)
	}
	// An IPv4-mapped IPv6 address is the IPv4 address.
	if got := stamped(c, netip.AddrFrom16(ip.As16()), now); got != want {
		t.Errorf("mapped address: got %x, want %x", got.cookieBytes, want.cookieBytes)
	}
	// The secret, the address and the time each change the server cookie;
	// no address at all still gives one.
	for _, tt := range []struct {
		name string
		q    Query
		ts   string // the timestamp in the server cookie
	}{
		{"other secret", stamped(mustCookies(t, rfc9018Vectors[3].secret), ip, now), "5cf79f11"},
		{"other address", stamped(c, netip.MustParseAddr("198.51.100.101"), now), "5cf79f11"},
		{"no address", stamped(c, netip.Addr{}, now), "5cf79f11"},
		{"a second later", stamped(c, ip, now.Add(time.Second)), "5cf79f12"},
	} {
		// Client cookie, version 1, reserved zero, timestamp; another hash.
		b := tt.q.cookieBytes
		if tt.q.cookie != cookieStamped || hex.EncodeToString(b[:16]) != v.query+"01000000"+tt.ts ||
			bytes.Equal(b[16:], want.cookieBytes[16:]) {
			t.Errorf("%s: got %x, from %x", tt.name, b, want.cookieBytes)
		}
	}
	// Nothing to stamp: no Cookies, or no client cookie.
	q := prepared(t, v.query)
	before := q
	(*Cookies)(nil).Stamp(&q, ip, now)
	if q != before {
		t.Errorf("nil Cookies changed %+v to %+v", before, q)
	}
	q = prepared(t, "")
	before = q
	c.Stamp(&q, ip, now)
	if q != before || q.cookie != cookieNone {
		t.Errorf("query without cookie: got %+v", q)
	}
	fresh := prepared(t, v.query)
	n := testing.AllocsPerRun(100, func() {
		q := fresh
		c.Stamp(&q, ip, now)
	})
	if n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}

func TestPrepareQueryCookies(t *testing.T) {
	const (
		hdr      = "abcd 0100 0001 0000 0000 0001"
		question = "03 777777 07 6578616d706c65 03 636f6d 00 0001 0001"
	)
	opt := func(options string) string {
		b := mustHex(options)
		return "00 0029 04d0 00008000" + hex.EncodeToString([]byte{byte(len(b) >> 8), byte(len(b))}) + options
	}
	server16 := "01000000 5cf79f11 1f8130c3eee29480"
	tests := []struct {
		name   string
		opt    string
		want   error  // nil: accepted
		client string // the client cookie remembered
	}{
		{"client cookie", opt("000a 0008 0102030405060708"), nil, "0102030405060708"},
		{"client and server cookie", opt("000a 0018 0102030405060708" + server16), nil, "0102030405060708"},
		{"40 bytes", opt("000a 0028 0102030405060708" + server16 + server16), nil, "0102030405060708"},
		{"16 bytes", opt("000a 0010 0102030405060708 1112131415161718"), nil, "0102030405060708"},
		{"two, the first counts", opt("000a 0008 0102030405060708 000a 0008 1112131415161718"), nil, "0102030405060708"},
		{"none", opt("000c 0002 0000"), nil, ""},
		{"empty", opt("000a 0000"), ErrMalformed, ""},
		{"7 bytes", opt("000a 0007 01020304050607"), ErrMalformed, ""},
		{"9 bytes", opt("000a 0009 010203040506070809"), ErrMalformed, ""},
		{"15 bytes", opt("000a 000f 0102030405060708 11121314151617"), ErrMalformed, ""},
		{"41 bytes", opt("000a 0029 0102030405060708" + server16 + server16 + "ff"), ErrMalformed, ""},
		{"a good one, then a bad one", opt("000a 0008 0102030405060708 000a 0004 01020304"), ErrMalformed, ""},
		{"version 1, bad cookie: BADVERS first", "00 0029 04d0 00018000 0008 000a 0004 01020304", ErrBadVersion, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := mustHex(hdr + question + tt.opt)
			got, q, err := PrepareQuery(nil, pkt, DefaultPayloadSize)
			if !errorIs(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if m := unpack(t, got); hasCookie(m) {
				t.Errorf("cookie sent upstream: %v", m.IsEdns0())
			}
			if tt.client == "" {
				if q.cookie != cookieNone {
					t.Errorf("got cookie state %d, want none", q.cookie)
				}
				return
			}
			if q.cookie != cookieClient || hex.EncodeToString(q.cookieBytes[:8]) != tt.client ||
				[16]byte(q.cookieBytes[8:]) != [16]byte{} {
				t.Errorf("got %d %x, want client cookie %s", q.cookie, q.cookieBytes, tt.client)
			}
		})
	}
}

// errorIs is errors.Is with nil wanting nil.
func errorIs(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

func TestPrepareAnswerCookies(t *testing.T) {
	v := rfc9018Vectors[0]
	c := mustCookies(t, v.secret)
	ip, now := netip.MustParseAddr(v.client), time.Unix(v.now, 0)
	ours := v.answer
	theirs := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "2464c4abcf10c957f1f2f3f4f5f6f7f8"}
	pad := &dns.EDNS0_PADDING{Padding: make([]byte, 8)}
	withCookie := cookieQuery(t, v.query)
	plain := pack(t, withOPT(newQuery("www.example.com.", dns.TypeA), 1232, true))
	noOPT := pack(t, newQuery("www.example.com.", dns.TypeA))
	answer := func(query []byte, n int, opts ...dns.EDNS0) func() []byte {
		return func() []byte {
			a := answerFor(unpack(t, query), n, opts != nil)
			if opt := a.IsEdns0(); opt != nil {
				opt.Option = slices.DeleteFunc(opts, func(o dns.EDNS0) bool { return o == nil })
			}
			return pack(t, a)
		}
	}
	tests := []struct {
		name    string
		query   []byte
		stamp   bool
		tcp     bool
		answer  func() []byte
		wantOPT bool
		cookies []string // the COOKIE options the client gets
		others  string   // its other options
		wantTC  bool
		wantAN  int
		wantLen int // 0: not checked
	}{
		{"stamped, answer without cookie", withCookie, true, false, answer(withCookie, 3, nil),
			true, []string{ours}, "", false, 3, 0},
		{"stamped, the resolver's cookie replaced", withCookie, true, false, answer(withCookie, 3, theirs),
			true, []string{ours}, "", false, 3, 0},
		{"stamped, padding kept before ours", withCookie, true, false, answer(withCookie, 3, theirs, pad, theirs),
			true, []string{ours}, pad.String(), false, 3, 0},
		{"not stamped, the resolver's cookie removed", withCookie, false, false, answer(withCookie, 3, pad, theirs),
			true, nil, pad.String(), false, 3, 0},
		{"no client cookie, the resolver's removed", plain, true, false, answer(plain, 3, theirs),
			true, nil, "", false, 3, 0},
		{"stamped, answer without OPT: one added", withCookie, true, false, answer(withCookie, 3),
			true, []string{ours}, "", false, 3, 0},
		{"client without OPT: no OPT, no cookie", noOPT, true, false, answer(noOPT, 3, theirs),
			false, nil, "", false, 3, 0},
		{"stamped, truncated to 1232 with the cookie", withCookie, true, false, answer(withCookie, 200, theirs),
			true, []string{ours}, "", true, -1, 0},
		{"stamped, TCP", withCookie, true, true, answer(withCookie, 200, theirs),
			true, []string{ours}, "", false, 200, 0},
		{"stamped, header-only REFUSED", withCookie, true, false, func() []byte {
			return cat(withCookie[:2], mustHex("8185 0001 0000 0000 0000"))
		}, true, []string{ours}, "", false, 0, headerLen + newOPTLen + cookieOptLen},
		{"stamped, OPT before glue (through dns.Msg)", withCookie, true, false, func() []byte {
			a := answerFor(unpack(t, withCookie), 3, true)
			a.IsEdns0().Option = []dns.EDNS0{theirs}
			a.Extra = append(a.Extra, &dns.A{Hdr: dns.RR_Header{Name: "ns.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: []byte{192, 0, 2, 1}})
			return pack(t, a)
		}, true, []string{ours}, "", false, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustPrepare(t, tt.query, DefaultPayloadSize)
			if tt.stamp {
				c.Stamp(&q, ip, now)
			}
			if tt.tcp {
				q.Limit = MaxTCPSize
			}
			ans := tt.answer()
			got, err := PrepareAnswer(nil, ans, q)
			if err != nil {
				t.Fatal(err)
			}
			m := unpack(t, got)
			if len(got) > q.Limit || tt.wantLen != 0 && len(got) != tt.wantLen {
				t.Errorf("got %d bytes, limit %d, want %d", len(got), q.Limit, tt.wantLen)
			}
			if m.Id != q.ID || !m.Response || m.Rcode != unpack(t, ans).Rcode || m.Truncated != tt.wantTC {
				t.Errorf("got header %+v", m.MsgHdr)
			}
			if tt.wantAN >= 0 && len(m.Answer) != tt.wantAN || tt.wantAN < 0 && (len(m.Answer) == 0 || len(m.Answer) >= 200) {
				t.Errorf("got %d answer records, want %d", len(m.Answer), tt.wantAN)
			}
			opt := m.IsEdns0()
			if (opt != nil) != tt.wantOPT || countOPT(m) > 1 {
				t.Fatalf("got %d OPT %v, want %v", countOPT(m), opt, tt.wantOPT)
			}
			if !slices.Equal(answerCookies(t, got), tt.cookies) {
				t.Errorf("got cookies %q, want %q", answerCookies(t, got), tt.cookies)
			}
			if opt == nil {
				return
			}
			var others []dns.EDNS0
			for _, o := range opt.Option {
				if o.Option() != dns.EDNS0COOKIE {
					others = append(others, o)
				}
			}
			if s := optString(&dns.OPT{Option: others}); s != tt.others {
				t.Errorf("got other options %q, want %q", s, tt.others)
			}
			if n := len(opt.Option); tt.cookies != nil && opt.Option[n-1].Option() != dns.EDNS0COOKIE {
				t.Errorf("our cookie is not the last option: %v", opt)
			}
		})
	}
	// Zero allocations on the wire, cookie added and the resolver's cut.
	q := mustPrepare(t, withCookie, DefaultPayloadSize)
	c.Stamp(&q, ip, now)
	buf := make([]byte, 0, 2048)
	for _, ans := range [][]byte{answer(withCookie, 4, nil)(), answer(withCookie, 4, theirs)(), answer(withCookie, 200, theirs)()} {
		n := testing.AllocsPerRun(100, func() {
			if _, err := PrepareAnswer(buf, ans, q); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("%d bytes: got %v allocations, want 0", len(ans), n)
		}
	}
}
