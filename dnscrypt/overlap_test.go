package dnscrypt

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// overlapFunc is one sealing or opening function with fixed keys and
// nonces, an input and the output it gives with a separate dst.
type overlapFunc struct {
	name    string
	in      []byte // a DNS message (or padded plaintext) to seal, or a packet to open
	want    []byte // the result for in with a dst of its own
	n       int    // bytes the call appends to dst
	header  int    // bytes before the (padded) message in the packet
	exactOK bool   // in[:0] as dst is supported: sealing in place
	call    func(dst, in []byte) ([]byte, error)
}

func overlapFuncs(tb testing.TB, c Construction) []overlapFunc {
	tb.Helper()
	client, resolver := fuzzKeys(tb, c)
	cn := [HalfNonceSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	rn := [HalfNonceSize]byte{21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
	const padded = 2 * BlockSize
	msg := dnsMessage(100)
	q, err := SealQuery(nil, msg, client, &cn, padded)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := SealResponse(nil, msg, resolver, &cn, &rn, padded)
	if err != nil {
		tb.Fatal(err)
	}
	plain, err := Pad(nil, msg, padded)
	if err != nil {
		tb.Fatal(err)
	}
	return []overlapFunc{
		{"SealQuery", msg, q, QueryOverhead + padded, QueryOverhead, true, func(dst, in []byte) ([]byte, error) {
			return SealQuery(dst, in, client, &cn, padded)
		}},
		{"SealResponse", msg, r, ResponseOverhead + padded, ResponseOverhead, true, func(dst, in []byte) ([]byte, error) {
			return SealResponse(dst, in, resolver, &cn, &rn, padded)
		}},
		{"SealResponseRaw", plain, r, ResponseOverhead + padded, ResponseOverhead, true, func(dst, in []byte) ([]byte, error) {
			return SealResponseRaw(dst, in, resolver, &cn, &rn)
		}},
		{"OpenQuery", q, msg, padded, QueryOverhead, false, func(dst, in []byte) ([]byte, error) {
			return OpenQuery(dst, in, resolver)
		}},
		{"OpenResponse", r, msg, padded, ResponseOverhead, false, func(dst, in []byte) ([]byte, error) {
			return OpenResponse(dst, in, client, &cn)
		}},
	}
}

// overlapShape lays the input and dst out in one array: the bytes the
// call appends start at offset base, the input at base+d, dst keeps keep
// bytes before base and has spare bytes of spare capacity.
type overlapShape struct{ d, keep, spare int }

// check runs f on shape s and compares with what the index arithmetic
// says: ErrOverlap exactly when the appended bytes (if dst has room for
// them) share memory with the input, exact in-place sealing excepted; then
// nothing is written. Otherwise the result is f.want after dst's kept
// bytes.
func (f overlapFunc) check(t *testing.T, s overlapShape) {
	t.Helper()
	base := len(f.in) + s.keep + 16
	buf := make([]byte, base+max(s.spare, f.n)+len(f.in)+max(s.d, 0)+16)
	for i := range buf {
		buf[i] = byte(i*13 + 7)
	}
	in := buf[base+s.d : base+s.d+len(f.in)]
	copy(in, f.in)
	dst := buf[base-s.keep : base : base+s.spare]
	before := bytes.Clone(buf)

	written := s.spare >= f.n // otherwise append moves to new memory
	overlap := written && base+s.d < base+f.n && base < base+s.d+len(f.in)
	wantErr := overlap && !(f.exactOK && s.d == 0)

	got, err := f.call(dst, in)
	if wantErr {
		if !errors.Is(err, ErrOverlap) {
			t.Fatalf("%+v: got %v, want ErrOverlap", s, err)
		}
		if len(got) != len(dst) || cap(got) != cap(dst) {
			t.Errorf("%+v: got len %d cap %d with the error, want dst back (len %d cap %d)", s, len(got), cap(got), len(dst), cap(dst))
		}
		if !bytes.Equal(buf, before) {
			t.Errorf("%+v: the buffer changed although the call failed", s)
		}
		return
	}
	if err != nil {
		t.Fatalf("%+v: %v", s, err)
	}
	if !bytes.Equal(got[:s.keep], before[base-s.keep:base]) {
		t.Errorf("%+v: dst's %d kept bytes changed", s, s.keep)
	}
	if !bytes.Equal(got[s.keep:], f.want) {
		t.Errorf("%+v: got %x, want %x", s, got[s.keep:], f.want)
	}
}

// TestOverlap runs every function on every shape of overlap between the
// bytes it appends to dst and its input.
func TestOverlap(t *testing.T) {
	for _, c := range constructions {
		for _, f := range overlapFuncs(t, c) {
			in, n := len(f.in), f.n
			for _, sh := range []struct {
				desc string
				overlapShape
			}{
				{"separate", overlapShape{d: n + 64, spare: n}},
				{"input just before the output", overlapShape{d: -in, spare: n}},
				{"input just after the output", overlapShape{d: n, spare: n}},
				{"input in dst's kept bytes", overlapShape{d: -in - 2, keep: in + 4, spare: n}},
				{"in place: in[:0] as dst", overlapShape{d: 0, spare: n}},
				{"in place, capacity one byte short: append moves", overlapShape{d: 0, spare: n - 1}},
				{"input one byte into the output", overlapShape{d: 1, spare: n}},
				{"input one byte before the output", overlapShape{d: -1, spare: n}},
				{"input ends one byte into the output", overlapShape{d: -in + 1, spare: n}},
				{"input ends one byte into the output, starts in dst's kept bytes", overlapShape{d: -in + 1, keep: in, spare: n}},
				{"input starts at the output's last byte", overlapShape{d: n - 1, spare: n}},
				// Sealing: the message already where its ciphertext goes.
				{"input at the output's payload", overlapShape{d: f.header, spare: n}},
				// Opening: the message goes where its ciphertext was.
				{"output at the input's payload", overlapShape{d: -f.header, spare: n}},
				{"one inside the other", overlapShape{d: (n - in) / 2, spare: n}},
				{"overlap beyond the capacity needed", overlapShape{d: 1, spare: n + 64}},
				{"overlap only beyond the bytes appended", overlapShape{d: n, spare: n + 64}},
			} {
				t.Run(fmt.Sprintf("%v/%s/%s", c, f.name, sh.desc), func(t *testing.T) {
					f.check(t, sh.overlapShape)
				})
			}
		}
	}
}

// FuzzOverlap checks every function on arbitrary shapes against the
// index arithmetic of overlapFunc.check.
func FuzzOverlap(f *testing.F) {
	f.Add(uint8(0), int16(0), uint8(0), int8(0))
	f.Add(uint8(3), int16(0), uint8(0), int8(0))
	f.Add(uint8(1), int16(1), uint8(0), int8(0))
	f.Add(uint8(4), int16(-72), uint8(0), int8(0))
	f.Add(uint8(2), int16(-100), uint8(3), int8(-1))
	f.Add(uint8(8), int16(300), uint8(200), int8(64))
	funcs := map[Construction][]overlapFunc{}
	for _, c := range constructions {
		funcs[c] = overlapFuncs(f, c)
	}
	f.Fuzz(func(t *testing.T, which uint8, d int16, keep uint8, spare int8) {
		c := constructions[int(which)%len(constructions)]
		fn := funcs[c][int(which)/len(constructions)%len(funcs[c])]
		span := len(fn.in) + fn.n + 8 // from 4 bytes before the output to 4 after
		fn.check(t, overlapShape{
			d:     (int(d)%span+span)%span - len(fn.in) - 4,
			keep:  int(keep),
			spare: max(fn.n+int(spare), 0),
		})
	})
}
