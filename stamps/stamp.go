package stamps

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/jedisct1/go-dnsstamps"
)

// MaxStampLen is the longest stamp string [Parse] accepts. Real stamps are
// a few hundred bytes; the bound keeps hostile input cheap to reject.
const MaxStampLen = 8192

// Parse decodes an "sdns://" server stamp with go-dnsstamps and checks what
// that package leaves to its callers:
//
//   - DNSCrypt (0x01): the provider public key is 32 bytes, the provider
//     name is valid (see [ErrInvalidProviderName]) and the address is an
//     IP literal with a port, IPv6 in brackets;
//   - plain DNS (0x00): the address is an IP literal with a port;
//   - DoH (0x02) and DoT (0x03): the host name is not empty, and the
//     address, when present, is an IP literal with a port.
//
// Host names are never accepted as addresses. The address in the result is
// canonical ("[2001:db8::1]:443"), with the protocol's default port filled
// in. Other protocols (DoQ, ODoH, relays) parse with go-dnsstamps' own
// checks only; callers that cannot use them must reject them by Proto.
// Relay+server pairs ("sdns://RELAY/SERVER") are not accepted.
//
// Errors wrap [ErrInvalidStamp] and, for a bad provider key or name, also
// [ErrInvalidProviderKey] or [ErrInvalidProviderName].
func Parse(s string) (dnsstamps.ServerStamp, error) {
	if len(s) > MaxStampLen {
		return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %d bytes long, limit %d", ErrInvalidStamp, len(s), MaxStampLen)
	}
	st, err := dnsstamps.NewServerStampFromString(s)
	if err != nil {
		return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %w", ErrInvalidStamp, err)
	}
	switch st.Proto {
	case dnsstamps.StampProtoTypeDNSCrypt:
		if len(st.ServerPk) != ed25519.PublicKeySize {
			return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %w: %d bytes, want %d",
				ErrInvalidStamp, ErrInvalidProviderKey, len(st.ServerPk), ed25519.PublicKeySize)
		}
		if err := checkProviderName(st.ProviderName); err != nil {
			return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %w", ErrInvalidStamp, err)
		}
		if st.ServerAddrStr, err = canonicalAddr(st.ServerAddrStr); err != nil {
			return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %w", ErrInvalidStamp, err)
		}
	case dnsstamps.StampProtoTypePlain:
		if st.ServerAddrStr, err = canonicalAddr(st.ServerAddrStr); err != nil {
			return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %w", ErrInvalidStamp, err)
		}
	case dnsstamps.StampProtoTypeDoH, dnsstamps.StampProtoTypeTLS:
		if st.ProviderName == "" {
			return dnsstamps.ServerStamp{}, fmt.Errorf("%w: empty host name", ErrInvalidStamp)
		}
		if st.ServerAddrStr != "" {
			if st.ServerAddrStr, err = canonicalAddr(st.ServerAddrStr); err != nil {
				return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %w", ErrInvalidStamp, err)
			}
		}
	}
	return st, nil
}

// canonicalAddr checks an address go-dnsstamps has already given a port.
// It rejects forms go-dnsstamps lets through ("[1.2.3.4]:443", an
// unbracketed IPv6 address read as address plus port) and rewrites the
// rest canonically.
func canonicalAddr(addr string) (string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr().Zone() != "" || ap.Port() == 0 {
		return "", fmt.Errorf("%w: %q is not ip:port", ErrInvalidAddress, addr)
	}
	return ap.String(), nil
}

// checkProviderName accepts what can be sent as a DNS query name: 1 to 255
// bytes without spaces or control characters.
func checkProviderName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidProviderName)
	}
	if len(name) > 255 {
		return fmt.Errorf("%w: %d bytes long, limit 255", ErrInvalidProviderName, len(name))
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: %q: space or control character at offset %d", ErrInvalidProviderName, name, i)
		}
	}
	return nil
}

// Format encodes st as an "sdns://" string, leaving out the protocol's
// default port. It returns "" for a stamp that cannot be encoded: an
// unknown protocol, or a field longer than its one-byte length prefix
// allows. Stamps from [Parse] and [NewDNSCrypt] always encode, and
// Parse(Format(st)) gives st back.
func Format(st dnsstamps.ServerStamp) string {
	if !encodable(&st) {
		return ""
	}
	return st.String()
}

func encodable(st *dnsstamps.ServerStamp) bool {
	lp := func(n int) bool { return n <= 0xff }
	vlp := func(items []string) bool {
		for _, it := range items {
			if len(it) > 0x7f {
				return false
			}
		}
		return true
	}
	hashes := func() bool {
		for _, h := range st.Hashes {
			if len(h) > 0x7f {
				return false
			}
		}
		return true
	}
	addr := func(defaultPort int) bool {
		return lp(len(strings.TrimSuffix(st.ServerAddrStr, ":"+strconv.Itoa(defaultPort))))
	}
	switch st.Proto {
	case dnsstamps.StampProtoTypePlain:
		return addr(dnsstamps.DefaultDNSPort)
	case dnsstamps.StampProtoTypeDNSCrypt:
		return addr(dnsstamps.DefaultPort) && lp(len(st.ServerPk)) && lp(len(st.ProviderName))
	case dnsstamps.StampProtoTypeDoH, dnsstamps.StampProtoTypeODoHRelay:
		return addr(dnsstamps.DefaultPort) && hashes() && lp(len(st.ProviderName)) && lp(len(st.Path)) && vlp(st.BootstrapIPs)
	case dnsstamps.StampProtoTypeTLS, dnsstamps.StampProtoTypeDoQ:
		return addr(dnsstamps.DefaultDoTPort) && hashes() && lp(len(st.ProviderName)) && vlp(st.BootstrapIPs)
	case dnsstamps.StampProtoTypeODoHTarget:
		return lp(len(st.ProviderName)) && lp(len(st.Path))
	case dnsstamps.StampProtoTypeDNSCryptRelay:
		return addr(dnsstamps.DefaultPort)
	}
	return false
}

// NewDNSCrypt builds a DNSCrypt stamp from the values dnscrypt-proxy 1.x
// takes on its command line or from its resolvers list: an address as
// given to -r (see [NormalizeAddr]; the default port is 443), the provider
// name of -N and the provider key of -k (see [ParseProviderKey]).
//
// Errors wrap [ErrInvalidAddress], [ErrInvalidProviderName] or
// [ErrInvalidProviderKey].
func NewDNSCrypt(addr, providerName string, pk ed25519.PublicKey, props dnsstamps.ServerInformalProperties) (dnsstamps.ServerStamp, error) {
	ap, err := NormalizeAddr(addr, dnsstamps.DefaultPort)
	if err != nil {
		return dnsstamps.ServerStamp{}, err
	}
	if err := checkProviderName(providerName); err != nil {
		return dnsstamps.ServerStamp{}, err
	}
	if len(pk) != ed25519.PublicKeySize {
		return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidProviderKey, len(pk), ed25519.PublicKeySize)
	}
	return dnsstamps.ServerStamp{
		Proto:         dnsstamps.StampProtoTypeDNSCrypt,
		Props:         props,
		ServerAddrStr: ap,
		ServerPk:      append([]byte(nil), pk...),
		ProviderName:  providerName,
	}, nil
}
