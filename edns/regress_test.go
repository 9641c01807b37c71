package edns

import (
	"bytes"
	"errors"
	"testing"

	"github.com/miekg/dns"
)

// Regression tests for inputs the fuzzers found; the raw inputs are also in
// testdata/fuzz.

// FuzzPrepareQuery/8d40d0680661f56e: an OPT with a Client Subnet option
// whose address has bits beyond the prefix, which miekg/dns masks. Going
// through *dns.Msg changed the client's option, so it was then kept byte for
// byte; now no Client Subnet option goes upstream at all. It is removed,
// other options are kept byte for byte, and the query still parses. The
// fuzzer's OPT has EDNS version 0x30, which now gets BADVERS; the test sets
// it to 0 to keep checking the rest.
func TestRegressionECSRemoved(t *testing.T) {
	raw := []byte("00\x010\x00\x01\x00\x00\x00\x00\x00\x01\x000000\x00\x00)000000\x00\v\x00\b\x00\a\x00\x01\b 000")
	if _, _, err := PrepareQuery(nil, raw, 1252); !errors.Is(err, ErrBadVersion) {
		t.Fatalf("the fuzzer's input: got %v, want ErrBadVersion", err)
	}
	pkt := bytes.Clone(raw)
	pkt[23] = 0      // OPT TTL: extended RCODE 0x30, version 0, flags 0x3030
	const rdata = 28 // OPT RDATA offset: header, question "\x00" 0x3030 0x3030, OPT header
	ecs := pkt[rdata:]
	nsid := mustHex("0003 0004 01020304")
	withRDATA := func(options ...[]byte) []byte {
		b := append(bytes.Clone(pkt[:rdata]), bytes.Join(options, nil)...)
		n := len(b) - rdata
		b[rdata-2], b[rdata-1] = byte(n>>8), byte(n)
		return b
	}
	for _, tt := range []struct {
		name string
		in   []byte
		want []byte // with the client's size
	}{
		{"fuzzer's input", pkt, withRDATA()},
		{"NSID first", withRDATA(nsid, ecs), withRDATA(nsid)},
		{"NSID last", withRDATA(ecs, nsid), withRDATA(nsid)},
	} {
		for _, size := range []uint16{512, 1252} {
			got, q, err := PrepareQuery(nil, tt.in, size)
			if err != nil {
				t.Fatalf("%s, size %d: %v", tt.name, size, err)
			}
			want := bytes.Clone(tt.want)
			if size > MinUDPSize {
				want[rdata-8], want[rdata-7] = byte(size>>8), byte(size) // OPT CLASS
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s, size %d: got %x, want %x", tt.name, size, got, want)
			}
			if m := unpack(t, got); hasECS(m) || m.IsEdns0() == nil {
				t.Errorf("%s, size %d: got OPT %v", tt.name, size, m.IsEdns0())
			}
			if !q.HadOPT || q.Limit != 0x3030 {
				t.Errorf("%s, size %d: got %+v", tt.name, size, q)
			}
		}
	}
}

// FuzzPrepareQuery/d7cb3a9be0badf55: a TSIG record with empty RDATA, which
// miekg/dns unpacks but packs back as 16 bytes it cannot unpack. Signed
// queries now pass unchanged (a rewrite would break the signature anyway).
func TestRegressionSignedQueryUnchanged(t *testing.T) {
	pkt := []byte("00\x010\x00\x01\x00\x00\x00\x00\x00\x01\x000000\x00\x00\xfa000000\x00\x00")
	got, q, err := PrepareQuery(nil, pkt, 517)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pkt) || q.HadOPT || q.Limit != MinUDPSize {
		t.Errorf("got %x %+v, want the query unchanged", got, q)
	}
}

// FuzzPrepareQuery/04377d3a6ef4bb8e: a record after the OPT whose owner
// name is a compression pointer into the OPT's CLASS field. Rewriting the
// size on the wire changed that name; layouts with records besides the OPT
// now go through *dns.Msg. The fuzzer's OPT has EDNS version 0x30, now
// BADVERS; the test sets it to 0.
func TestRegressionPointerIntoOPT(t *testing.T) {
	raw := []byte("00\x010\x00\x01\x00\x00\x00\x00\x00\x02\x010\x000000\x00\x00)\x1000000\x00\x00\xc0\x160000000\x00\x00\x040000")
	if _, _, err := PrepareQuery(nil, raw, 1252); !errors.Is(err, ErrBadVersion) {
		t.Fatalf("the fuzzer's input: got %v, want ErrBadVersion", err)
	}
	pkt := bytes.Clone(raw)
	pkt[25] = 0 // OPT TTL: extended RCODE 0x30, version 0
	got, _, err := PrepareQuery(nil, pkt, 1252)
	if err != nil {
		t.Fatal(err)
	}
	in, out := unpack(t, pkt), unpack(t, got)
	if out.IsEdns0().UDPSize() != 1252 {
		t.Errorf("got OPT %v, want size 1252", out.IsEdns0())
	}
	if in.Extra[1].Header().Name != out.Extra[1].Header().Name {
		t.Errorf("got name %q, want %q", out.Extra[1].Header().Name, in.Extra[1].Header().Name)
	}
}

// FuzzTCReplyBytes/2290c1f922a165aa: an additional record whose owner name
// points at the header flags, which the TC reply sets. Such layouts are now
// re-encoded through TCReply.
func TestRegressionPointerIntoHeader(t *testing.T) {
	pkt := []byte("00\x010\x00\x01\x00\x00\x00\x00\x00\x02\x000000\x0000000000\x00\x00\xc0\x0200000000\x00\x040000")
	got, err := TCReplyBytes(nil, pkt)
	if err != nil {
		t.Fatal(err)
	}
	in, out := unpack(t, pkt), unpack(t, got)
	if !out.Response || !out.Truncated || !out.RecursionAvailable {
		t.Errorf("got header %+v", out.MsgHdr)
	}
	if in.Extra[1].Header().Name != out.Extra[1].Header().Name {
		t.Errorf("got name %q, want %q", out.Extra[1].Header().Name, in.Extra[1].Header().Name)
	}
}

// FuzzPrepareAnswer/8e8b36ba08c0c804: answer names that point into the
// answer records' RDATA and run on into the trailing OPT record. Cutting the
// OPT on the wire leaves them unterminated. This violates RFC 1035 name
// compression; the documented result is an answer the client rejects, never
// an error or panic here, and the OPT is gone.
func TestRegressionNameIntoStrippedOPT(t *testing.T) {
	query := []byte("\x124\x010\x00\x01\x00\x00\x00\x00\x00\x00\x03www\aeXAmple\x03Com\x00\x00\x01\x00\x01")
	answer := []byte("\x124\x810\x00\x01\x00\x03\x00\x00\x00\x01\x03www\aeXAmple\x03Com\x00\x00\x01\x00\x01\xc0000000000\x00\x04000 \xc0000000000\x00\x040000\xc0000000000\x00\x040000\x00\x00)000000\x00\x00")
	_, q, err := PrepareQuery(nil, query, DefaultPayloadSize)
	if err != nil {
		t.Fatal(err)
	}
	q.Limit = MaxTCPSize
	got, err := PrepareAnswer(nil, answer, q)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(answer) - 11; len(got) != want || be16(got[10:]) != 0 {
		t.Errorf("got %d bytes, ARCOUNT %d; want %d, 0", len(got), be16(got[10:]), want)
	}
	if !namesAbuseLayout(answer) {
		t.Error("namesAbuseLayout does not flag it")
	}
	// A well-formed answer is not flagged.
	qm := newQuery("www.example.com.", dns.TypeA)
	if namesAbuseLayout(pack(t, answerFor(qm, 5, true))) {
		t.Error("namesAbuseLayout flags a normal answer")
	}
}

// FuzzPrepareAnswer/fe2d7de177157c66: an OPT record as the last record of
// the answer section. The wire path took it for the answer's OPT and would
// have moved it to the additional section; an OPT outside the additional
// section now goes through *dns.Msg and stays an (odd) answer record for a
// client with OPT, or is removed for one without.
func TestRegressionOPTInAnswerSection(t *testing.T) {
	query := withOPT(newQuery("www.example.com.", dns.TypeA), 512, false)
	a := answerFor(query, 40, false)
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(1232)
	a.Answer = append(a.Answer, opt)
	ans := pack(t, a)
	for _, hadOPT := range []bool{true, false} {
		q := mustPrepare(t, pack(t, query), DefaultPayloadSize)
		if !hadOPT {
			q = mustPrepare(t, pack(t, newQuery("www.example.com.", dns.TypeA)), DefaultPayloadSize)
		}
		got, err := PrepareAnswer(nil, ans, q)
		if err != nil {
			t.Fatal(err)
		}
		checkAnswer(t, ans, got, q)
		if m := unpack(t, got); m.IsEdns0() != nil {
			t.Errorf("hadOPT %v: OPT moved to the additional section: %v", hadOPT, m)
		}
	}
}
