package dnscrypttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jedisct1/go-dnsstamps"
	"github.com/miekg/dns"

	"github.com/tor-dnscrypt/dnscrypt-proxy/certs"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

// ProviderName is the provider name of every test server.
const ProviderName = "2.dnscrypt-cert.test.example"

// CertSpec describes one certificate the server offers. Zero fields take
// defaults: es-version 2, serial 1, valid from an hour ago for a day.
type CertSpec struct {
	Construction        dnscrypt.Construction
	Serial              uint32
	NotBefore, NotAfter time.Time
	// BadSignature flips a bit of the signature.
	BadSignature bool
	// Hidden keeps the certificate out of the TXT answer, while queries
	// made with it are still answered (a rotated-out key).
	Hidden bool
}

// Faults make the server misbehave. The zero value behaves.
type Faults struct {
	WrongNonce bool          // the response echoes another client nonce
	WrongMagic bool          // the response starts with another magic
	BadPadding bool          // the decrypted response has no 0x80 marker
	BadTag     bool          // a ciphertext byte is flipped after sealing
	Garbage    bool          // random bytes instead of a response
	Truncate   bool          // every UDP answer comes back empty with TC=1
	Silent     bool          // queries are read and never answered
	Delay      time.Duration // every answer waits this long
	// NoCertUDP and NoCertTCP leave the certificate query unanswered on a
	// transport (dnsdist 1.7 does not answer it over TCP).
	NoCertUDP, NoCertTCP bool
	// RefuseCert answers the certificate query with REFUSED at once, on
	// both transports: a resolver that is up but has no certificate.
	RefuseCert bool
}

// Query is what the server saw of one encrypted query.
type Query struct {
	Transport   string // "udp" or "tcp"
	ClientMagic [dnscrypt.ClientMagicSize]byte
	ClientPK    [dnscrypt.KeySize]byte
	Nonce       [dnscrypt.HalfNonceSize]byte
	Size        int      // of the encrypted packet
	Msg         *dns.Msg // the decrypted DNS query
}

// certKey is a certificate the server holds with its resolver key pair.
type certKey struct {
	raw    []byte
	cons   dnscrypt.Construction
	magic  [dnscrypt.ClientMagicSize]byte
	kp     *dnscrypt.KeyPair
	hidden bool

	// keys caches the shared key per client public key, as resolvers do.
	keys sync.Map // [32]byte -> *dnscrypt.SharedKey
}

func (ck *certKey) key(h *dnscrypt.QueryHeader) (*dnscrypt.SharedKey, error) {
	if k, ok := ck.keys.Load(h.ClientPK); ok {
		return k.(*dnscrypt.SharedKey), nil
	}
	k, err := dnscrypt.NewResolverKey(ck.cons, &ck.kp.Secret, h)
	if err != nil {
		return nil, err
	}
	ck.keys.Store(h.ClientPK, k)
	return k, nil
}

// Server is an in-process DNSCrypt resolver on 127.0.0.1.
type Server struct {
	// Addr is the "127.0.0.1:port" of both the UDP and the TCP listener.
	Addr string
	// ProviderKey and providerSK sign the certificates.
	ProviderKey ed25519.PublicKey
	providerSK  ed25519.PrivateKey

	handler dns.Handler
	pc      net.PacketConn
	ln      net.Listener

	mu      sync.Mutex
	certs   []*certKey // offered and accepted, newest last
	faults  Faults
	queries []Query

	certQueries atomic.Int64
	tcpOpen     atomic.Int64 // TCP connections open now
	tcpPeak     atomic.Int64 // the most open at once
	closing     chan struct{}
	wg          sync.WaitGroup
	closeOnce   sync.Once
}

// NewServer starts a server answering with h (nil: [Zone]) and offering one
// default certificate (see [CertSpec]). It stops when the test ends.
func NewServer(tb testing.TB, h dns.Handler, specs ...CertSpec) *Server {
	tb.Helper()
	s, err := Start(h, specs...)
	if err != nil {
		tb.Fatalf("dnscrypttest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Start is NewServer without a testing.TB: the caller must Close the server.
func Start(h dns.Handler, specs ...CertSpec) (*Server, error) {
	if h == nil {
		h = Zone{}
	}
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &Server{ProviderKey: pk, providerSK: sk, handler: h, closing: make(chan struct{})}
	if len(specs) == 0 {
		specs = []CertSpec{{}}
	}
	if err := s.SetCerts(specs...); err != nil {
		return nil, err
	}
	// Bind UDP first, then TCP on the same port; retry if TCP's is taken.
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		s.pc, s.ln, s.Addr = pc, ln, pc.LocalAddr().String()
		break
	}
	if s.pc == nil {
		return nil, errors.New("no port free for both UDP and TCP")
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	return s, nil
}

// Close stops the server and waits for its goroutines. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.pc.Close()
		s.ln.Close()
		s.wg.Wait()
	})
}

// CloseUDP closes the UDP listener only: queries to it then meet an ICMP
// port unreachable, while TCP keeps answering.
func (s *Server) CloseUDP() { s.pc.Close() }

// TCPConns returns the number of TCP connections open now and the most that
// were open at once.
func (s *Server) TCPConns() (open, peak int) {
	return int(s.tcpOpen.Load()), int(s.tcpPeak.Load())
}

// Stamp returns the sdns:// stamp of the server, with the DNSSEC and no-log
// properties set.
func (s *Server) Stamp() string {
	st, err := stamps.NewDNSCrypt(s.Addr, ProviderName, s.ProviderKey,
		dnsstamps.ServerInformalPropertyDNSSEC|dnsstamps.ServerInformalPropertyNoLog)
	if err != nil {
		// The address, name and key are the server's own.
		panic(fmt.Sprintf("dnscrypttest: stamp of %s: %v", s.Addr, err))
	}
	return stamps.Format(st)
}

// SetCerts replaces the offered certificates by new ones made from specs,
// each with a fresh resolver key pair. Queries made with the replaced
// certificates are still answered (resolvers keep unexpired old keys), but
// they are no longer offered.
func (s *Server) SetCerts(specs ...CertSpec) error {
	now := time.Now()
	var made []*certKey
	for _, sp := range specs {
		ck, err := s.makeCert(sp, now)
		if err != nil {
			return err
		}
		made = append(made, ck)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ck := range s.certs {
		ck.hidden = true
	}
	s.certs = append(s.certs, made...)
	return nil
}

// ForgetOldCerts drops every certificate that is not offered: queries made
// with them get no answer, as after a resolver restart.
func (s *Server) ForgetOldCerts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []*certKey
	for _, ck := range s.certs {
		if !ck.hidden {
			keep = append(keep, ck)
		}
	}
	s.certs = keep
}

func (s *Server) makeCert(sp CertSpec, now time.Time) (*certKey, error) {
	if sp.Construction == 0 {
		sp.Construction = dnscrypt.XChaCha20Poly1305
	}
	if sp.Serial == 0 {
		sp.Serial = 1
	}
	if sp.NotBefore.IsZero() {
		sp.NotBefore = now.Add(-time.Hour)
	}
	if sp.NotAfter.IsZero() {
		sp.NotAfter = now.Add(24 * time.Hour)
	}
	kp, err := dnscrypt.GenerateKeyPair(rand.Reader)
	if err != nil {
		return nil, err
	}
	var magic [8]byte
	rand.Read(magic[:])
	raw, err := certs.Create(certs.Template{
		Construction: sp.Construction,
		ResolverPK:   kp.Public,
		ClientMagic:  magic,
		Serial:       sp.Serial,
		NotBefore:    sp.NotBefore,
		NotAfter:     sp.NotAfter,
	}, s.providerSK)
	if err != nil {
		return nil, err
	}
	if sp.BadSignature {
		raw[8] ^= 1
	}
	return &certKey{raw: raw, cons: sp.Construction, magic: magic, kp: kp, hidden: sp.Hidden}, nil
}

// SetFaults changes how the server misbehaves from now on.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

func (s *Server) getFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Queries returns a copy of what the server saw of every encrypted query so
// far, oldest first.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// CertQueries returns how many certificate queries the server answered.
func (s *Server) CertQueries() int { return int(s.certQueries.Load()) }

// offered returns the raw certificates in the TXT answer.
func (s *Server) offered() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, ck := range s.certs {
		if !ck.hidden {
			out = append(out, ck.raw)
		}
	}
	return out
}

func (s *Server) certFor(magic [dnscrypt.ClientMagicSize]byte) *certKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ck := range s.certs {
		if ck.magic == magic {
			return ck
		}
	}
	return nil
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, dnscrypt.MaxDNSSize)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if resp := s.handle("udp", pkt); resp != nil {
				s.pc.WriteTo(resp, from)
			}
		}()
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		open := s.tcpOpen.Add(1)
		for peak := s.tcpPeak.Load(); open > peak && !s.tcpPeak.CompareAndSwap(peak, open); peak = s.tcpPeak.Load() {
		}
		go func() {
			defer s.wg.Done()
			defer s.tcpOpen.Add(-1)
			defer c.Close()
			go func() { // unblock reads at Close
				select {
				case <-s.closing:
					c.Close()
				case <-time.After(30 * time.Second):
				}
			}()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return
			}
			pkt := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, pkt); err != nil {
				return
			}
			resp := s.handle("tcp", pkt)
			if resp == nil {
				// Silent: hold the connection until the client gives up.
				io.Copy(io.Discard, c)
				return
			}
			c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(resp))))
			c.Write(resp)
		}()
	}
}

// handle answers one packet; nil means no answer.
func (s *Server) handle(transport string, pkt []byte) []byte {
	f := s.getFaults()
	if len(pkt) >= dnscrypt.ClientMagicSize {
		if ck := s.certFor([dnscrypt.ClientMagicSize]byte(pkt)); ck != nil {
			return s.handleEncrypted(transport, pkt, ck, f)
		}
	}
	return s.handleCertQuery(transport, pkt, f)
}

func (s *Server) handleCertQuery(transport string, pkt []byte, f Faults) []byte {
	q := new(dns.Msg)
	if err := q.Unpack(pkt); err != nil || len(q.Question) != 1 {
		return nil
	}
	qq := q.Question[0]
	if (transport == "udp" && f.NoCertUDP) || (transport == "tcp" && f.NoCertTCP) {
		return nil
	}
	r := new(dns.Msg)
	r.SetReply(q)
	if f.RefuseCert || qq.Qtype != dns.TypeTXT || !strings.EqualFold(qq.Name, ProviderName+".") {
		r.Rcode = dns.RcodeRefused
	} else {
		for _, raw := range s.offered() {
			r.Answer = append(r.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 86400},
				Txt: []string{escapeTXT(raw)},
			})
		}
		s.certQueries.Add(1)
	}
	out, err := r.Pack()
	if err != nil {
		return nil
	}
	return out
}

// escapeTXT writes raw bytes in the \DDD presentation form miekg/dns packs.
func escapeTXT(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c < ' ' || c > '~' || c == '"' || c == '\\' || c == ';' {
			fmt.Fprintf(&sb, "\\%03d", c)
			continue
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

func (s *Server) handleEncrypted(transport string, pkt []byte, ck *certKey, f Faults) []byte {
	h, err := dnscrypt.ParseQueryHeader(pkt)
	if err != nil {
		return nil
	}
	k, err := ck.key(&h)
	if err != nil {
		return nil
	}
	plain, err := dnscrypt.OpenQuery(nil, pkt, k)
	if err != nil {
		return nil
	}
	q := new(dns.Msg)
	if err := q.Unpack(plain); err != nil {
		return nil
	}
	s.mu.Lock()
	s.queries = append(s.queries, Query{Transport: transport, ClientMagic: h.ClientMagic,
		ClientPK: h.ClientPK, Nonce: h.Nonce, Size: len(pkt), Msg: q.Copy()})
	s.mu.Unlock()

	if f.Silent {
		return nil
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-s.closing:
			return nil
		}
	}
	if f.Garbage {
		g := make([]byte, 64+int(pkt[len(pkt)-1]))
		rand.Read(g)
		return g
	}
	w := &recorder{}
	s.handler.ServeDNS(w, q)
	if w.msg == nil {
		return nil
	}
	answer := w.msg
	// Over UDP the answer may not be longer than the query (spec section 9);
	// what does not fit comes back truncated, as resolvers do.
	maxPlain := dnscrypt.MaxDNSSize - dnscrypt.ResponseOverhead - dnscrypt.MaxPadding
	if transport == "udp" {
		maxPlain = (len(pkt)-dnscrypt.ResponseOverhead)&^(dnscrypt.BlockSize-1) - 1
		if f.Truncate {
			opt := answer.IsEdns0()
			answer.Answer, answer.Ns, answer.Extra = nil, nil, nil
			if opt != nil {
				answer.Extra = []dns.RR{opt}
			}
			answer.Truncated = true
		}
	}
	out, err := answer.Pack()
	if err != nil {
		return nil
	}
	if len(out) > maxPlain {
		answer.Truncate(maxPlain)
		if out, err = answer.Pack(); err != nil {
			return nil
		}
	}
	var r [1]byte
	rand.Read(r[:])
	padded := dnscrypt.TCPPaddedLen(len(out), r[0])
	if transport == "udp" {
		padded = min(padded, maxPlain+1)
	}
	var rn [dnscrypt.HalfNonceSize]byte
	rand.Read(rn[:])
	cn := h.Nonce
	if f.WrongNonce {
		cn[0] ^= 0xff
	}
	var resp []byte
	if f.BadPadding {
		// The message followed by zero bytes, without the 0x80 marker.
		plain := make([]byte, padded)
		copy(plain, out)
		resp, err = dnscrypt.SealResponseRaw(nil, plain, k, &cn, &rn)
	} else {
		resp, err = dnscrypt.SealResponse(nil, out, k, &cn, &rn, padded)
	}
	if err != nil {
		return nil
	}
	if f.WrongMagic {
		resp[0] ^= 0xff
	}
	if f.BadTag {
		resp[len(resp)-1] ^= 1
	}
	return resp
}

// recorder is a dns.ResponseWriter that keeps the message written to it.
type recorder struct{ msg *dns.Msg }

func (r *recorder) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (r *recorder) RemoteAddr() net.Addr      { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (r *recorder) WriteMsg(m *dns.Msg) error { r.msg = m; return nil }
func (r *recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	r.msg = m
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

var _ dns.ResponseWriter = (*recorder)(nil)
