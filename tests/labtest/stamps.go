package labtest

import (
	"encoding/hex"
	"fmt"
	"net"

	"github.com/jedisct1/go-dnsstamps"

	"github.com/tor-dnscrypt/dnscrypt-proxy/stamps"
)

// PinnedStamp returns a DoT or DoH stamp (proto StampProtoTypeTLS or
// StampProtoTypeDoH) of a server at addr whose certificate is pinned by
// tbsHash (the hex SHA-256 of its TBS part: Lab.TLSTBSHash,
// Lab.BackendTLSTBSHash), such as one of the lab's servers behind a
// forwarder or an onion service.
//
// An IP address is the stamp's address, and its port rides on tlsName, as
// in the lab's own stamps ("backend.lab.test:PORT"). A host name (an onion
// service's, say) is the stamp's host name, without the protocol's
// default port (853, 443): it is then the TLS name too, which the pin
// makes irrelevant. DoH stamps get the path /dns-query.
func PinnedStamp(proto dnsstamps.StampProtoType, addr, tlsName, tbsHash string) (string, error) {
	h, err := hex.DecodeString(tbsHash)
	if err != nil || len(h) != 32 {
		return "", fmt.Errorf("labtest: TBS hash %q is not 64 hex digits", tbsHash)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("labtest: stamp address: %w", err)
	}
	defaultPort := "853"
	switch proto {
	case dnsstamps.StampProtoTypeTLS:
	case dnsstamps.StampProtoTypeDoH:
		defaultPort = "443"
	default:
		return "", fmt.Errorf("labtest: %v stamps are not pinned TLS stamps", proto)
	}
	st := dnsstamps.ServerStamp{Proto: proto, Hashes: [][]byte{h}}
	switch {
	case net.ParseIP(host) != nil:
		st.ServerAddrStr, st.ProviderName = host, net.JoinHostPort(tlsName, port)
	case port == defaultPort:
		st.ProviderName = host
	default:
		st.ProviderName = addr
	}
	if proto == dnsstamps.StampProtoTypeDoH {
		st.Path = "/dns-query"
	}
	return stamps.Format(st), nil
}
