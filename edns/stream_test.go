package edns

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Seeds of the stream option tests.
var (
	// seedKeepPad: OPT 1232 with an NSID request, an edns-tcp-keepalive
	// with TIMEOUT 5 (500 ms) and 3 bytes of Padding.
	seedKeepPad = mustHex("0005 8180 0001 0000 0000 0001 01 61 00 0001 0001" +
		"00 0029 04d0 00000000 0011 0003 0000 000b 0002 0005 000c 0003 000000")
	// seedEmptyKeep: OPT with an empty keepalive (as a client sends it).
	seedEmptyKeep = mustHex("0006 0100 0001 0000 0000 0001 01 61 00 0001 0001" +
		"00 0029 04d0 00000000 0004 000b 0000")
	// seedOPTInAuthority: an OPT record as the last record, in the
	// authority section (a fuzzer's find: a new OPT made two).
	seedOPTInAuthority = mustHex("0008 0100 0001 0000 0001 0000 01 61 00 0001 0001" +
		"00 0029 04d0 00000000 0000")
	// seedBadOption: an option that overruns its OPT record.
	seedBadOption = mustHex("0007 0100 0001 0000 0000 0001 01 61 00 0001 0001" +
		"00 0029 04d0 00000000 0004 000b 0009")
)

// optionsOf returns the options of msg's last OPT record (each with its
// code and length), and whether there is one lastOPT takes.
func optionsOf(msg []byte) ([][]byte, bool) {
	opt, has, ok := lastOPT(msg)
	if !ok || !has {
		return nil, false
	}
	var os [][]byte
	for p := opt.hdr + 10; p < opt.end; {
		next := p + optHeaderLen + int(be16(msg[p+2:]))
		os = append(os, msg[p:next])
		p = next
	}
	return os, true
}

// withoutStream returns os without the keepalive and Padding options.
func withoutStream(os [][]byte) [][]byte {
	return slices.DeleteFunc(slices.Clone(os), func(o []byte) bool {
		c := be16(o)
		return c == dns.EDNS0TCPKEEPALIVE || c == dns.EDNS0PADDING
	})
}

func TestAppendStreamQuery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     []byte
		o       StreamQuery
		changed bool
	}{
		{"cookie kept, keepalive, padding", seedDig, StreamQuery{Keepalive: true, Block: QueryPadBlock}, true},
		{"keepalive only", seedDig, StreamQuery{Keepalive: true}, true},
		{"options replaced", seedKeepPad, StreamQuery{Keepalive: true, Block: 64}, true},
		{"no OPT", seedPlain, StreamQuery{Keepalive: true, Block: QueryPadBlock}, false},
		{"no OPT, NewOPT", seedPlain, StreamQuery{Keepalive: true, Block: QueryPadBlock, NewOPT: true}, true},
		{"signed", seedNoOPT, StreamQuery{Keepalive: true, Block: QueryPadBlock, NewOPT: true}, false},
		{"OPT not last", seedTwo, StreamQuery{Keepalive: true}, false},
		{"bad option", seedBadOption, StreamQuery{Keepalive: true}, false},
		{"OPT in authority", seedOPTInAuthority, StreamQuery{Keepalive: true, NewOPT: true}, false},
		{"short", seedPlain[:20], StreamQuery{Keepalive: true, NewOPT: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := AppendStreamQuery([]byte("xx"), tc.msg, tc.o)
			if string(out[:2]) != "xx" {
				t.Fatalf("dst prefix lost: %x", out)
			}
			out = out[2:]
			if changed != tc.changed {
				t.Fatalf("changed %v, want %v: %x", changed, tc.changed, out)
			}
			if !changed {
				if !bytes.Equal(out, tc.msg) {
					t.Fatalf("got %x, want the message unchanged", out)
				}
				return
			}
			checkStreamQuery(t, tc.msg, out, tc.o)
			m := unpack(t, out)
			opt := m.IsEdns0()
			if opt == nil {
				t.Fatalf("no OPT in %v", m)
			}
			last := opt.Option[len(opt.Option)-1]
			if tc.o.Block > 0 && last.Option() != dns.EDNS0PADDING {
				t.Errorf("last option %v, want Padding", last)
			}
			if !tc.o.Keepalive && slices.ContainsFunc(opt.Option, func(o dns.EDNS0) bool { return o.Option() == dns.EDNS0TCPKEEPALIVE }) {
				t.Errorf("keepalive option in %v", opt)
			}
		})
	}
}

// checkStreamQuery checks out, what AppendStreamQuery made of msg with o:
// the message unchanged up to its OPT's options (but ARCOUNT for a new
// OPT), the options without keepalive and Padding, then those o asks for,
// and the length a multiple of o.Block.
func checkStreamQuery(t *testing.T, msg, out []byte, o StreamQuery) {
	t.Helper()
	os, had := optionsOf(msg)
	opt, _, _ := lastOPT(msg)
	switch {
	case had && !bytes.Equal(out[:opt.hdr+8], msg[:opt.hdr+8]):
		t.Fatalf("got %x, want %x up to the OPT's RDLENGTH", out, msg)
	case !had && (!bytes.Equal(out[:10], msg[:10]) || !bytes.Equal(out[12:len(msg)], msg[12:]) || be16(out[10:]) != 1):
		t.Fatalf("got %x, want %x and a new OPT", out, msg)
	case !had && !bytes.Equal(out[len(msg):len(msg)+9], []byte{0, 0, 41, 2, 0, 0, 0, 0, 0}):
		t.Fatalf("new OPT %x, want size 512 and no flags", out[len(msg):])
	}
	want := withoutStream(os)
	if o.Keepalive {
		want = append(want, []byte{0, dns.EDNS0TCPKEEPALIVE, 0, 0})
	}
	got, ok := optionsOf(out)
	if !ok {
		t.Fatalf("no OPT in %x", out)
	}
	if o.Block > 0 {
		pad := got[len(got)-1]
		if be16(pad) != dns.EDNS0PADDING || len(bytes.Trim(pad[4:], "\x00")) != 0 {
			t.Fatalf("last option %x, want Padding of zeros", pad)
		}
		if len(out)%o.Block != 0 {
			t.Fatalf("%d bytes, want a multiple of %d", len(out), o.Block)
		}
		got = got[:len(got)-1]
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("options %x, want %x", got, want)
	}
}

func TestStripStreamOptions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		msg       []byte
		keepalive time.Duration
		ok        bool
		changed   bool
	}{
		{"keepalive and padding", seedKeepPad, 500 * time.Millisecond, true, true},
		{"empty keepalive", seedEmptyKeep, 0, false, true},
		{"cookie only", seedDig, 0, false, false},
		{"no OPT", seedPlain, 0, false, false},
		{"OPT not last", seedTwo, 0, false, false},
		{"bad option", seedBadOption, 0, false, false},
		{"OPT in authority", seedOPTInAuthority, 0, false, false},
		{"short", seedPlain[:5], 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.msg)
			out, ka, ok := StripStreamOptions(in)
			if ka != tc.keepalive || ok != tc.ok {
				t.Errorf("keepalive %v %v, want %v %v", ka, ok, tc.keepalive, tc.ok)
			}
			if changed := !bytes.Equal(out, tc.msg); changed != tc.changed {
				t.Fatalf("got %x from %x: changed %v, want %v", out, tc.msg, changed, tc.changed)
			}
			checkStripped(t, tc.msg, out)
		})
	}
	// A real answer with a 468-byte padding block, as unbound pads.
	m := new(dns.Msg)
	m.SetQuestion("www.lab.test.", dns.TypeA)
	m.Response = true
	rr, _ := dns.NewRR("www.lab.test. 60 IN A 127.0.84.10")
	m.Answer = append(m.Answer, rr)
	m.SetEdns0(1232, true)
	m.IsEdns0().Option = append(m.IsEdns0().Option,
		&dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE, Timeout: 1200, Length: 2},
		&dns.EDNS0_PADDING{Padding: make([]byte, 468-66)})
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out, ka, ok := StripStreamOptions(b)
	if ka != 2*time.Minute || !ok {
		t.Errorf("keepalive %v %v, want 2m0s true", ka, ok)
	}
	got := unpack(t, out)
	if opt := got.IsEdns0(); len(opt.Option) != 0 || !opt.Do() || len(got.Answer) != 1 {
		t.Errorf("got %v, want the answer with an empty OPT", got)
	}
}

// checkStripped checks out, what StripStreamOptions made of msg: msg
// unchanged (but RDLENGTH) up to its OPT's options, which lost the
// keepalive and Padding options; or msg unchanged.
func checkStripped(t *testing.T, msg, out []byte) {
	t.Helper()
	if bytes.Equal(out, msg) {
		return
	}
	os, ok := optionsOf(msg)
	if !ok {
		t.Fatalf("changed %x into %x without an OPT to change", msg, out)
	}
	opt, _, _ := lastOPT(msg)
	if !bytes.Equal(out[:opt.hdr+8], msg[:opt.hdr+8]) {
		t.Fatalf("got %x, want %x up to the OPT's RDLENGTH", out, msg)
	}
	got, _ := optionsOf(out)
	if want := withoutStream(os); !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("options %x, want %x", got, want)
	}
}

func TestStreamOptionsAllocs(t *testing.T) {
	dst := make([]byte, 0, 1024)
	o := StreamQuery{Keepalive: true, Block: QueryPadBlock, NewOPT: true}
	ans := bytes.Clone(seedKeepPad)
	n := testing.AllocsPerRun(100, func() {
		dst, _ = AppendStreamQuery(dst[:0], seedDig, o)
		dst, _ = AppendStreamQuery(dst[:0], seedPlain, o)
		copy(ans, seedKeepPad)
		StripStreamOptions(ans)
	})
	if n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

func FuzzStreamOptions(f *testing.F) {
	for _, s := range [][]byte{seedDig, seedPlain, seedECS, seedTwo, seedLoop, seedNoOPT, seedKeepPad,
		seedEmptyKeep, seedBadOption, seedOPTInAuthority, seedPlain[:20], nil} {
		f.Add(s, true, uint8(128), true)
		f.Add(s, false, uint8(0), false)
		f.Add(s, true, uint8(7), false)
	}
	f.Fuzz(func(t *testing.T, msg []byte, keepalive bool, block uint8, newOPT bool) {
		o := StreamQuery{Keepalive: keepalive, Block: int(block), NewOPT: newOPT}
		out, changed := AppendStreamQuery(nil, msg, o)
		if !changed {
			if !bytes.Equal(out, msg) {
				t.Fatalf("not changed, but got %x from %x", out, msg)
			}
		} else {
			checkStreamQuery(t, msg, out, o)
			// A message as miekg/dns packs it (names compressed only
			// towards prior names) stays one it unpacks.
			if m := new(dns.Msg); m.Unpack(msg) == nil {
				if b, err := m.Pack(); err == nil && bytes.Equal(b, msg) {
					if err := new(dns.Msg).Unpack(out); err != nil {
						t.Fatalf("%x from %x does not unpack: %v", out, msg, err)
					}
				}
			}
			// Stripped again: the original options, the stream ones gone.
			stripped, _, _ := StripStreamOptions(bytes.Clone(out))
			os, _ := optionsOf(msg)
			got, ok := optionsOf(stripped)
			if !ok || !slices.EqualFunc(got, withoutStream(os), bytes.Equal) {
				t.Fatalf("stripped %x: options %x, want %x", stripped, got, withoutStream(os))
			}
		}
		in := bytes.Clone(msg)
		stripped, ka, ok := StripStreamOptions(in)
		if len(stripped) > len(msg) || ka < 0 || !ok && ka != 0 {
			t.Fatalf("got %x, %v %v from %x", stripped, ka, ok, msg)
		}
		checkStripped(t, msg, stripped)
		if ok {
			os, _ := optionsOf(msg)
			i := slices.IndexFunc(os, func(o []byte) bool { return be16(o) == dns.EDNS0TCPKEEPALIVE && len(o) == 6 })
			if i < 0 {
				t.Fatalf("keepalive %v from %x, which has no TIMEOUT", ka, msg)
			}
		}
	})
}

func BenchmarkStreamOptions(b *testing.B) {
	o := StreamQuery{Keepalive: true, Block: QueryPadBlock, NewOPT: true}
	dst := make([]byte, 0, 1024)
	b.Run("AppendStreamQuery", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			dst, _ = AppendStreamQuery(dst[:0], seedDig, o)
		}
	})
	ans := bytes.Clone(seedKeepPad)
	b.Run("StripStreamOptions", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			copy(ans, seedKeepPad)
			StripStreamOptions(ans[:len(seedKeepPad)])
		}
	})
}
