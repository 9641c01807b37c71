package certs

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
)

// fuzzSeeds are certificates for the fuzzers' seed corpora.
func fuzzSeeds(tb testing.TB) [][]byte {
	tm := testTemplate(2, dnscrypt.XSalsa20Poly1305)
	tm.Extensions = []byte("extension")
	future := testTemplate(3, dnscrypt.XChaCha20Poly1305)
	future.NotBefore = testNow.Add(time.Hour)
	return [][]byte{
		mustCreate(tb, testTemplate(1, dnscrypt.XSalsa20Poly1305)),
		mustCreate(tb, testTemplate(1, dnscrypt.XChaCha20Poly1305)),
		mustCreate(tb, tm),
		mustCreate(tb, future),
		mustCreate(tb, testTemplate(9, 3)),
		nastyCert(tb, 4, nil),
		readTestdata(tb, "c1.cert"),
		readTestdata(tb, "c2.cert"),
		[]byte("DNSC"),
		nil,
	}
}

// FuzzVerify checks that Verify never panics, and that whatever it
// accepts (fully, or with only the validity wrong) really is signed by the
// key and decodes to the bytes it came from.
func FuzzVerify(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint32(testNow.Unix()), uint8(0))
		f.Add(s, uint32(dnsdistNow.Unix()), uint8(1))
	}
	f.Add(readTestdata(f, "ameshkov/c.cert"), uint32(1795302960), uint8(2)) // all-zero client magic
	keys := []ed25519.PublicKey{
		testPK,
		ed25519.PublicKey(readTestdata(f, "provider.pub")),
		ed25519.PublicKey(readTestdata(f, "ameshkov/provider.pub")),
	}
	f.Fuzz(func(t *testing.T, b []byte, nowUnix uint32, key uint8) {
		pk := keys[int(key)%len(keys)]
		now := time.Unix(int64(nowUnix), 0)
		c, err := Verify(b, pk, now)
		if ve, ok := errors.AsType[*ValidityError](err); ok {
			c = ve.Cert
			if c == nil || c.ValidAt(now) || ve.Expired != (now.Unix() > c.NotAfter.Unix()) {
				t.Fatalf("bad ValidityError %+v", ve)
			}
		} else if err != nil {
			if c != nil {
				t.Fatalf("got a cert and error %v", err)
			}
			return
		} else if !c.ValidAt(now) {
			t.Fatalf("accepted a cert not valid at %v: %+v", now, c)
		}
		if !ed25519.Verify(pk, b[72:], b[8:72]) {
			t.Fatalf("accepted a certificate with a bad signature: %x", b)
		}
		if !bytes.Equal(c.Raw, b) || string(b[:4]) != "DNSC" || !c.Construction.Supported() ||
			uint16(c.Construction) != binary.BigEndian.Uint16(b[4:]) ||
			!bytes.Equal(c.ResolverPK[:], b[72:104]) || !bytes.Equal(c.ClientMagic[:], b[104:112]) ||
			c.Serial != binary.BigEndian.Uint32(b[112:]) ||
			c.NotBefore.Unix() != int64(binary.BigEndian.Uint32(b[116:])) ||
			c.NotAfter.Unix() != int64(binary.BigEndian.Uint32(b[120:])) ||
			!bytes.Equal(c.Extensions(), b[124:]) {
			t.Fatalf("fields do not match the bytes: %+v\n%x", c, b)
		}
		if !c.NotBefore.Before(c.NotAfter) {
			t.Fatalf("accepted a malformed certificate: %+v", c)
		}
		if int(key)%len(keys) == 0 {
			// Round trip: Create makes the same bytes, bar the minor version.
			again, err := Create(Template{Construction: c.Construction, ResolverPK: c.ResolverPK, ClientMagic: c.ClientMagic,
				Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Extensions: c.Extensions()}, testSK)
			if err != nil || !bytes.Equal(again[:6], b[:6]) || !bytes.Equal(again[8:], b[8:]) {
				t.Fatalf("Create(Verify(b)) != b: %v\n%x\n%x", err, again, b)
			}
		}
	})
}

// FuzzTXTRecord checks that a TXT record's raw data survives miekg/dns's
// presentation form: txtData of the record miekg/dns decodes from rdata
// must be the concatenation of rdata's character-strings.
func FuzzTXTRecord(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if len(s) < 2 {
			continue
		}
		var rdata []byte
		for _, piece := range split(s, 1, min(len(s)-1, 100)) {
			rdata = append(append(rdata, byte(len(piece))), piece...)
		}
		f.Add(rdata)
	}
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{3, '\\', '"', 0})
	f.Add([]byte{5, '\\', '1', '2', '3', ';'})
	f.Add([]byte{4, 'a'}) // overruns
	f.Add(append([]byte{255}, bytes.Repeat([]byte{0xff}, 255)...))
	f.Fuzz(func(t *testing.T, rdata []byte) {
		if len(rdata) > 0xffff {
			return
		}
		want, wantErr := joinCharacterStrings(nil, rdata)
		h := dns.RR_Header{Name: "x.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Rdlength: uint16(len(rdata))}
		rr, _, err := dns.UnpackRRWithHeader(h, rdata, 0)
		if err != nil {
			return // miekg/dns rejects it; so would a real exchange
		}
		txt, ok := rr.(*dns.TXT)
		if !ok {
			t.Fatalf("got %T", rr)
		}
		got, err := txtData(txt)
		if wantErr != nil {
			return // malformed rdata miekg/dns accepted: only no panic
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("rdata %x: got %x, %v; want %x", rdata, got, err, want)
		}
	})
}

// FuzzResponse feeds arbitrary answers to the checks and parsing behind
// Fetch: no panic, and every record returned comes from a TXT record of
// the answer section.
func FuzzResponse(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion(dnsdistProvider+".", dns.TypeTXT)
	q.Id = 0x1234 // the ID of the captured answer
	f.Add(readTestdata(f, "dnsdist/response.bin"))
	for _, s := range fuzzSeeds(f) {
		r := wireReply(f, q, nil, rawTXT(f, dnsdistProvider, dns.ClassINET, split(s, min(len(s), 30))...))
		b, err := r.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	pk := ed25519.PublicKey(readTestdata(f, "provider.pub"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			return
		}
		recs, err := txtRecords(q, r)
		if err != nil {
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("error %v does not match ErrBadResponse", err)
			}
			return
		}
		if len(recs) > len(r.Answer) {
			t.Fatalf("%d records from %d answers", len(recs), len(r.Answer))
		}
		cs, err := Select(recs, pk, dnsdistNow, true)
		if (err == nil) == (len(cs) == 0) {
			t.Fatalf("got %d certs and error %v", len(cs), err)
		}
	})
}
