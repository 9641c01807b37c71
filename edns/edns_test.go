package edns

import (
	"testing"

	"github.com/miekg/dns"
)

func TestSetPayloadSize(t *testing.T) {
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
	pad := &dns.EDNS0_PADDING{Padding: make([]byte, 7)}
	tests := []struct {
		name    string
		m       *dns.Msg
		size    uint16
		wantTTL uint32 // OPT TTL: extended RCODE, version, DO, Z
		wantOpt int
	}{
		{"no OPT", newQuery("example.com.", dns.TypeA), 1252, 0, 0},
		{"no OPT small", newQuery("example.com.", dns.TypeA), 100, 0, 0},
		{"client OPT", withOPT(newQuery("example.com.", dns.TypeA), 4096, false), 1252, 0, 0},
		{"client OPT DO and options, cookie removed", withOPT(newQuery("example.com.", dns.TypeA), 512, true, cookie, pad), 1232, 0x8000, 1},
		{"client OPT with ECS", withOPT(newQuery("example.com.", dns.TypeA), 1232, true, cookie,
			&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 56, Address: []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0}}, pad), 1252, 0x8000, 1},
		{"client OPT extended fields", func() *dns.Msg {
			m := withOPT(newQuery("example.com.", dns.TypeA), 512, true)
			m.IsEdns0().Hdr.Ttl = 0x01027fff
			return m
		}(), 4096, 0x01027fff, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before string // the options that may go upstream
			if opt := tt.m.IsEdns0(); opt != nil {
				before = upstreamOptions(opt)
			}
			SetPayloadSize(tt.m, tt.size)
			if n := countOPT(tt.m); n != 1 {
				t.Fatalf("got %d OPT records, want 1", n)
			}
			opt := tt.m.IsEdns0()
			if got := opt.UDPSize(); got != tt.size {
				t.Errorf("got size %d, want %d", got, tt.size)
			}
			if opt.Hdr.Ttl != tt.wantTTL {
				t.Errorf("got TTL %#x, want %#x", opt.Hdr.Ttl, tt.wantTTL)
			}
			if len(opt.Option) != tt.wantOpt || optString(opt) != before {
				t.Errorf("got %d options %s, want %d: %s", len(opt.Option), optString(opt), tt.wantOpt, before)
			}
			if opt.Hdr.Name != "." {
				t.Errorf("got owner %q, want root", opt.Hdr.Name)
			}
		})
	}
}

func TestSetPayloadSizeBeforeTSIG(t *testing.T) {
	m := newQuery("example.com.", dns.TypeA)
	m.SetTsig("key.", dns.HmacSHA256, 300, 1)
	SetPayloadSize(m, 1252)
	if len(m.Extra) != 2 {
		t.Fatalf("got %d additional records, want 2", len(m.Extra))
	}
	if m.Extra[0].Header().Rrtype != dns.TypeOPT || m.Extra[1].Header().Rrtype != dns.TypeTSIG {
		t.Errorf("got %v, want OPT then TSIG", m.Extra)
	}
}

func TestClientLimit(t *testing.T) {
	tests := []struct {
		name string
		m    *dns.Msg
		want int
	}{
		{"no OPT", newQuery("a.", dns.TypeA), 512},
		{"OPT 4096", withOPT(newQuery("a.", dns.TypeA), 4096, false), 4096},
		{"OPT 1232", withOPT(newQuery("a.", dns.TypeA), 1232, true), 1232},
		{"OPT 512", withOPT(newQuery("a.", dns.TypeA), 512, false), 512},
		{"OPT 100", withOPT(newQuery("a.", dns.TypeA), 100, false), 512},
		{"OPT 0", withOPT(newQuery("a.", dns.TypeA), 0, false), 512},
		{"OPT 65535", withOPT(newQuery("a.", dns.TypeA), 65535, false), 65535},
	}
	for _, tt := range tests {
		if got := ClientLimit(tt.m); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	q := newQuery("big.example.com.", dns.TypeA)
	qt := newQuery("txt.example.com.", dns.TypeTXT)
	tests := []struct {
		name  string
		m     func() *dns.Msg
		limit int
		optIn bool
	}{
		{"200 A to 512", func() *dns.Msg { return answerFor(q, 200, false) }, 512, false},
		{"200 A to 1232", func() *dns.Msg { return answerFor(q, 200, true) }, 1232, true},
		{"200 A to 100 means 512", func() *dns.Msg { return answerFor(q, 200, true) }, 100, true},
		{"13 TXT to 512", func() *dns.Msg { return txtAnswer(qt, 13, 254, false) }, 512, false},
		{"13 TXT to 1232", func() *dns.Msg { return txtAnswer(qt, 13, 254, true) }, 1232, true},
		{"OPT too big for limit", func() *dns.Msg {
			a := answerFor(q, 200, false)
			a.SetEdns0(1232, true)
			a.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, 600)}}
			return a
		}, 512, true},
		{"TSIG", func() *dns.Msg {
			a := answerFor(q, 200, true)
			a.Extra = append(a.Extra, &dns.TSIG{
				Hdr:       dns.RR_Header{Name: "key.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
				Algorithm: dns.HmacSHA256, MACSize: 1, MAC: "00", TimeSigned: 1, Fudge: 300, OrigId: q.Id,
			})
			return a
		}, 1232, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m()
			before := len(m.Answer)
			Truncate(m, tt.limit)
			b := pack(t, m)
			limit := max(tt.limit, 512)
			if len(b) > limit {
				t.Errorf("got %d bytes, want at most %d", len(b), limit)
			}
			got := unpack(t, b)
			if !got.Truncated {
				t.Error("TC not set")
			}
			if len(got.Answer) == 0 || len(got.Answer) >= before {
				t.Errorf("got %d answer records of %d, want some but not all", len(got.Answer), before)
			}
			if len(got.Question) != 1 || got.Question[0] != m.Question[0] {
				t.Errorf("got question %v, want %v", got.Question, m.Question)
			}
			if (got.IsEdns0() != nil) != tt.optIn {
				t.Errorf("got OPT %v, want present=%v", got.IsEdns0(), tt.optIn)
			}
			// Tight: one more record would not have fit.
			if len(got.Answer) < before {
				more := tt.m()
				more.Answer = more.Answer[:len(got.Answer)+1]
				more.Extra = got.Extra
				if n := more.Len(); n <= limit {
					t.Errorf("one more record still fits (%d <= %d)", n, limit)
				}
			}
		})
	}
}

func TestTruncateFits(t *testing.T) {
	q := newQuery("example.com.", dns.TypeA)
	m := answerFor(q, 3, true)
	Truncate(m, 512)
	got := unpack(t, pack(t, m))
	if got.Truncated || len(got.Answer) != 3 {
		t.Errorf("got TC=%v and %d records, want no TC and 3", got.Truncated, len(got.Answer))
	}
}

func TestTCReply(t *testing.T) {
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
	for _, q := range []*dns.Msg{
		newQuery("example.com.", dns.TypeMX),
		withOPT(newQuery("example.com.", dns.TypeAAAA), 1232, true, cookie),
	} {
		q.CheckingDisabled = true
		q.AuthenticatedData = true
		r := TCReply(q)
		if !r.Response || !r.Truncated || !r.RecursionAvailable {
			t.Errorf("got QR=%v TC=%v RA=%v, want all set", r.Response, r.Truncated, r.RecursionAvailable)
		}
		if r.Id != q.Id || !r.RecursionDesired || !r.CheckingDisabled || !r.AuthenticatedData || r.Rcode != 0 {
			t.Errorf("header changed: got %+v, from %+v", r.MsgHdr, q.MsgHdr)
		}
		if len(r.Answer) != 0 || len(r.Ns) != 0 {
			t.Errorf("got %d answer and %d authority records, want none", len(r.Answer), len(r.Ns))
		}
		if len(r.Question) != 1 || r.Question[0] != q.Question[0] {
			t.Errorf("got question %v, want %v", r.Question, q.Question)
		}
		if (r.IsEdns0() == nil) != (q.IsEdns0() == nil) {
			t.Fatalf("got OPT %v, want %v", r.IsEdns0(), q.IsEdns0())
		}
		if opt := r.IsEdns0(); opt != nil {
			if opt.String() != q.IsEdns0().String() {
				t.Errorf("got OPT %v, want %v", opt, q.IsEdns0())
			}
			if opt == q.IsEdns0() {
				t.Error("reply shares the query's OPT record")
			}
		}
		if q.Response {
			t.Error("TCReply modified the query")
		}
	}
}
