package stamps

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
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
//   - every address present is an IP literal with a port, IPv6 in
//     brackets; host names are never accepted. The result holds it in
//     canonical form ("[2001:db8::1]:443"), the protocol's default port
//     filled in;
//   - DNSCrypt (0x01): the provider public key is 32 bytes and the provider
//     name is not empty. What a provider name may hold is the DNSCrypt
//     protocol's rule, dnscrypt.CheckProviderName, which the runtime
//     applies to every resolver it is given; this package does not judge
//     names (it may not import dnscrypt), it keeps them verbatim;
//   - plain DNS (0x00), DNSCrypt and DNSCrypt relays (0x81): the address is
//     present;
//   - DoH (0x02), DoT (0x03) and DoQ (0x04): the host name is not empty.
//
// ODoH stamps parse with go-dnsstamps' checks and the address one only.
// Callers that cannot use a protocol must reject it by Proto. Relay+server
// pairs ("sdns://RELAY/SERVER") are not accepted.
//
// go-dnsstamps rejects DNSCrypt stamps shorter than 66 bytes and relay
// stamps shorter than 9, lengths the specification does not require; Parse
// decodes those itself, so that Parse(Format(st)) works for every stamp.
//
// Errors wrap [ErrInvalidStamp] and, for a bad provider key, name or
// address, also [ErrInvalidProviderKey], [ErrInvalidProviderName] or
// [ErrInvalidAddress].
func Parse(s string) (dnsstamps.ServerStamp, error) {
	if len(s) > MaxStampLen {
		return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %d bytes long, limit %d", ErrInvalidStamp, len(s), MaxStampLen)
	}
	st, err := dnsstamps.NewServerStampFromString(s)
	if err != nil {
		var ok bool
		if st, ok = parseShort(s); !ok {
			return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %w", ErrInvalidStamp, err)
		}
	}
	if err := check(&st); err != nil {
		return dnsstamps.ServerStamp{}, fmt.Errorf("%w: %w", ErrInvalidStamp, err)
	}
	return st, nil
}

func check(st *dnsstamps.ServerStamp) error {
	switch st.Proto {
	case dnsstamps.StampProtoTypeDNSCrypt:
		if len(st.ServerPk) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidProviderKey, len(st.ServerPk), ed25519.PublicKeySize)
		}
		if err := checkProviderName(st.ProviderName); err != nil {
			return err
		}
	case dnsstamps.StampProtoTypeDoH, dnsstamps.StampProtoTypeTLS, dnsstamps.StampProtoTypeDoQ:
		if st.ProviderName == "" {
			return errors.New("empty host name")
		}
	}
	switch st.Proto {
	case dnsstamps.StampProtoTypeDNSCrypt, dnsstamps.StampProtoTypePlain, dnsstamps.StampProtoTypeDNSCryptRelay:
		if st.ServerAddrStr == "" {
			return fmt.Errorf("%w: empty", ErrInvalidAddress)
		}
	}
	if st.ServerAddrStr != "" {
		var err error
		if st.ServerAddrStr, err = canonicalAddr(st.ServerAddrStr); err != nil {
			return err
		}
	}
	return nil
}

// parseShort decodes the DNSCrypt and DNSCrypt relay stamps that
// go-dnsstamps refuses as too short: they have only length-prefixed fields,
//
//	0x01 ‖ props ‖ LP(addr) ‖ LP(pk) ‖ LP(provider name)
//	0x81 ‖ LP(addr)
//
// It fills in the default port as go-dnsstamps does; [check] validates the
// rest.
func parseShort(s string) (dnsstamps.ServerStamp, bool) {
	rest, ok := strings.CutPrefix(s, "sdns:")
	if !ok {
		return dnsstamps.ServerStamp{}, false
	}
	bin, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimPrefix(rest, "//"))
	if err != nil || len(bin) == 0 {
		return dnsstamps.ServerStamp{}, false
	}
	var st dnsstamps.ServerStamp
	fields := 1
	switch st.Proto = dnsstamps.StampProtoType(bin[0]); {
	case st.Proto == dnsstamps.StampProtoTypeDNSCrypt && len(bin) < 66 && len(bin) >= 9:
		st.Props = dnsstamps.ServerInformalProperties(binary.LittleEndian.Uint64(bin[1:9]))
		bin, fields = bin[9:], 3
	case st.Proto == dnsstamps.StampProtoTypeDNSCryptRelay && len(bin) < 9:
		bin = bin[1:]
	default:
		return dnsstamps.ServerStamp{}, false
	}
	var lp [3][]byte
	for i := range fields {
		if len(bin) == 0 || int(bin[0]) > len(bin)-1 {
			return dnsstamps.ServerStamp{}, false
		}
		lp[i], bin = bin[1:1+int(bin[0])], bin[1+int(bin[0]):]
	}
	if len(bin) != 0 {
		return dnsstamps.ServerStamp{}, false
	}
	st.ServerAddrStr = withDefaultPort(string(lp[0]), dnsstamps.DefaultPort)
	if fields == 3 {
		st.ServerPk, st.ProviderName = lp[1], string(lp[2])
	}
	return st, true
}

// withDefaultPort appends the port to an address that has none, with
// go-dnsstamps' rule: a colon after the last ']' starts a port.
func withDefaultPort(addr string, port int) string {
	if i := strings.LastIndexByte(addr, ':'); i < 0 || i < strings.LastIndexByte(addr, ']') {
		return addr + ":" + strconv.Itoa(port)
	}
	return addr
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

// maxField is the longest field a stamp can hold: its length is one byte.
const maxField = 0xff

// checkProviderName checks what a stamp itself requires of a DNSCrypt
// provider name: that there is one, and that it fits the stamp's length
// byte. Whether the name can be asked for is the protocol's rule,
// dnscrypt.CheckProviderName (see [Parse]).
func checkProviderName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidProviderName)
	}
	if len(name) > maxField {
		return fmt.Errorf("%w: %d bytes long, a stamp holds at most %d", ErrInvalidProviderName, len(name), maxField)
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
	lp := func(n int) bool { return n <= maxField }
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
// name of -N (kept verbatim, see [Parse]) and the provider key of -k (see
// [ParseProviderKey]).
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
