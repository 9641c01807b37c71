package certs

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/tor-dnscrypt/dnscrypt-proxy/dnscrypt"
	"golang.org/x/net/proxy"
)

// Exchanger sends one plain DNS query to addr and returns the answer.
// [*dns.Client] satisfies it; tests pass fakes.
type Exchanger interface {
	ExchangeContext(ctx context.Context, m *dns.Msg, addr string) (*dns.Msg, time.Duration, error)
}

var (
	_ Exchanger = (*dns.Client)(nil)
	_ Exchanger = (*UDPWithTCPFallback)(nil)
	_ Exchanger = (*DialExchanger)(nil)
)

// certQueryUDPSize is the EDNS0 payload size announced in certificate
// queries, so that several certificates fit in one UDP answer.
const certQueryUDPSize = 1252

// Fetch asks the resolver at addr (its DNSCrypt address: "IP:port") for the
// certificates of provider (e.g. "2.dnscrypt-cert.example.com"; a trailing
// dot is added) with a plain TXT/IN query over ex, and returns the valid
// ones, best first, as [Select] does.
//
// The answer must be a NOERROR response to the question asked; TXT records
// owned by another name are ignored. Each TXT record is one certificate,
// its character-strings concatenated from the raw record data.
//
// Nothing is sent for a provider key that is not 32 bytes ([ErrProviderKey])
// or a provider name [dnscrypt.CheckProviderName] refuses (its error,
// wrapping [dnscrypt.ErrProviderName]). Other errors: ex's error (wrapped)
// when the exchange fails, [ErrBadResponse] for an unusable answer, and an
// error wrapping [ErrNoValidCert] when the answer holds no valid
// certificate.
func Fetch(ctx context.Context, ex Exchanger, addr, provider string, pk ed25519.PublicKey, now time.Time, ignoreNotBefore bool) ([]*Cert, error) {
	if len(pk) != ed25519.PublicKeySize {
		return nil, ErrProviderKey
	}
	if err := dnscrypt.CheckProviderName(provider); err != nil {
		return nil, err
	}
	name := dns.Fqdn(provider)
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeTXT)
	q.SetEdns0(certQueryUDPSize, false)
	r, _, err := ex.ExchangeContext(ctx, q, addr)
	if err != nil {
		return nil, fmt.Errorf("fetching certificates from %s: %w", addr, err)
	}
	records, err := txtRecords(q, r)
	if err != nil {
		return nil, fmt.Errorf("certificates from %s: %w", addr, err)
	}
	if len(records) == 0 {
		what := "no TXT record for " + name
		if r.Truncated {
			what += " in a truncated answer"
		}
		return nil, fmt.Errorf("certificates from %s: %w: %s", addr, ErrNoValidCert, what)
	}
	cs, err := Select(records, pk, now, ignoreNotBefore)
	if err != nil {
		return nil, fmt.Errorf("certificates from %s: %w", addr, err)
	}
	return cs, nil
}

// txtRecords checks that r answers q and returns the data of every TXT/IN
// record owned by q's name, each record's character-strings concatenated.
func txtRecords(q, r *dns.Msg) ([][]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: no message", ErrBadResponse)
	}
	if !r.Response {
		return nil, fmt.Errorf("%w: not a response", ErrBadResponse)
	}
	if r.Id != q.Id {
		return nil, fmt.Errorf("%w: id %d, want %d", ErrBadResponse, r.Id, q.Id)
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%w: rcode %s", ErrBadResponse, dns.RcodeToString[r.Rcode])
	}
	want := q.Question[0]
	if len(r.Question) != 1 || !sameQuestion(r.Question[0], want) {
		return nil, fmt.Errorf("%w: question not echoed", ErrBadResponse)
	}
	var out [][]byte
	for _, rr := range r.Answer {
		txt, ok := rr.(*dns.TXT)
		if !ok || txt.Hdr.Class != dns.ClassINET || !strings.EqualFold(txt.Hdr.Name, want.Name) {
			continue
		}
		b, err := txtData(txt)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func sameQuestion(a, b dns.Question) bool {
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

// txtData returns the concatenated character-strings of rr as they were on
// the wire. miekg/dns keeps TXT strings in presentation form (with \DDD and
// \" escapes), so the record is packed again and its raw data read back.
func txtData(rr *dns.TXT) ([]byte, error) {
	buf := make([]byte, dns.Len(rr)+1) // +1: an empty TXT still packs a length byte
	end, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("packing TXT record: %w", err)
	}
	return joinCharacterStrings(nil, buf[end-int(rr.Hdr.Rdlength):end])
}

var errCharacterString = errors.New("character-string overruns the record")

// joinCharacterStrings appends to dst the contents of the
// <character-string>s (one length byte, then that many bytes) that make up
// rdata.
func joinCharacterStrings(dst, rdata []byte) ([]byte, error) {
	for len(rdata) > 0 {
		n := int(rdata[0])
		if 1+n > len(rdata) {
			return nil, errCharacterString
		}
		dst = append(dst, rdata[1:1+n]...)
		rdata = rdata[1+n:]
	}
	return dst, nil
}

// UDPWithTCPFallback sends a query over UDP first and, as the protocol
// asks, again over TCP when the UDP answer is truncated (TC=1) or the UDP
// exchange fails (a timeout, or a resolver that serves certificates over
// TCP only). A nil UDP or TCP is a [*dns.Client] for that network with its
// default 2 s timeouts; give UDP a timeout shorter than ctx's deadline so
// that time is left for TCP.
//
// It sends UDP packets and connects directly: never use it over Tor (see
// [DialExchanger]).
type UDPWithTCPFallback struct {
	UDP, TCP Exchanger
}

// ExchangeContext implements [Exchanger].
func (u *UDPWithTCPFallback) ExchangeContext(ctx context.Context, m *dns.Msg, addr string) (*dns.Msg, time.Duration, error) {
	udp, tcp := u.UDP, u.TCP
	if udp == nil {
		udp = &dns.Client{Net: "udp"}
	}
	if tcp == nil {
		tcp = &dns.Client{Net: "tcp"}
	}
	r, rtt, err := udp.ExchangeContext(ctx, m, addr)
	if err == nil && r != nil && !r.Truncated {
		return r, rtt, nil
	}
	if ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		}
		return nil, rtt, fmt.Errorf("over udp: %w", err)
	}
	r2, rtt2, err2 := tcp.ExchangeContext(ctx, m, addr)
	if err2 != nil {
		if err != nil {
			return nil, rtt + rtt2, fmt.Errorf("over tcp: %w (after udp: %v)", err2, err)
		}
		return nil, rtt + rtt2, fmt.Errorf("over tcp after a truncated udp answer: %w", err2)
	}
	return r2, rtt + rtt2, nil
}

// DefaultExchangeTimeout bounds one [DialExchanger] exchange when its
// Timeout is zero. It is generous because a Tor circuit may take a while.
const DefaultExchangeTimeout = 30 * time.Second

// DialExchanger sends DNS over TCP on a connection from Dialer, for
// example a SOCKS5 dialer from [proxy.SOCKS5] pointing at Tor. It never
// sends UDP, never connects by itself and never resolves names: addr goes
// to Dialer as is. ctx bounds the dial (SOCKS handshake included) and the
// exchange; cancelling it closes the connection.
type DialExchanger struct {
	// Dialer makes the TCP connection. It must honour ctx. Nil is an error,
	// never a direct connection.
	Dialer proxy.ContextDialer
	// Timeout bounds dial and exchange together, in addition to ctx.
	// Zero means DefaultExchangeTimeout.
	Timeout time.Duration
}

// ExchangeContext implements [Exchanger]. The returned duration includes
// the dial.
func (d *DialExchanger) ExchangeContext(ctx context.Context, m *dns.Msg, addr string) (*dns.Msg, time.Duration, error) {
	if d.Dialer == nil {
		return nil, 0, errors.New("certs: DialExchanger has no Dialer")
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultExchangeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	conn, err := d.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, time.Since(start), fmt.Errorf("dialing %s: %w", addr, withCtxErr(ctx, err))
	}
	defer conn.Close()
	// Deadlines from ctx's deadline are set by ExchangeWithConnContext;
	// closing the connection also ends the exchange when ctx is cancelled.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := &dns.Client{Net: "tcp", Timeout: timeout}
	r, _, err := c.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: conn})
	if err != nil {
		return nil, time.Since(start), fmt.Errorf("exchange with %s: %w", addr, withCtxErr(ctx, err))
	}
	return r, time.Since(start), nil
}

// withCtxErr makes err, which ended an exchange under ctx, match ctx's
// error when ctx is done or its deadline has passed: a read deadline set
// from ctx may fire just before ctx itself reports it.
func withCtxErr(ctx context.Context, err error) error {
	ctxErr := ctx.Err()
	if dl, ok := ctx.Deadline(); ctxErr == nil && ok && !time.Now().Before(dl) {
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr == nil || errors.Is(err, ctxErr) {
		return err
	}
	return fmt.Errorf("%w (%w)", ctxErr, err)
}
