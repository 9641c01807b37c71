package dnscrypt

import "slices"

// Padding is ISO/IEC 7816-4: one 0x80 byte, then zero or more 0x00 bytes.
// It is always at least one byte long.

// Pad appends msg and its padding to dst, paddedLen bytes in all. It returns
// ErrPaddedLen unless len(msg) < paddedLen.
func Pad(dst, msg []byte, paddedLen int) ([]byte, error) {
	if paddedLen <= len(msg) {
		return dst, ErrPaddedLen
	}
	ret, out := grow(dst, paddedLen)
	copy(out, msg)
	out[len(msg)] = 0x80
	clear(out[len(msg)+1:])
	return ret, nil
}

// Unpad returns the message in front of the padding of b, a subslice of b.
// It returns ErrPadding when b does not end with 0x80 followed by zero or
// more 0x00 bytes.
func Unpad(b []byte) ([]byte, error) {
	i := len(b) - 1
	for i >= 0 && b[i] == 0 {
		i--
	}
	if i < 0 || b[i] != 0x80 {
		return nil, ErrPadding
	}
	return b[:i], nil
}

// roundUp returns n rounded up to a multiple of BlockSize.
func roundUp(n int) int {
	return (n + BlockSize - 1) &^ (BlockSize - 1)
}

// UDPPaddedLen returns the padded length of a UDP query of msgLen bytes: a
// multiple of 64, at least minLen and at least msgLen+1. The spec starts
// minLen at MinUDPQueryLen and grows it by 64 after each truncated answer, so
// that the resolver may send longer answers.
func UDPPaddedLen(msgLen, minLen int) int {
	return roundUp(max(msgLen+1, minLen))
}

// TCPPaddedLen returns the padded length of a TCP query (or of a response)
// of msgLen bytes: a multiple of 64 with 1 to MaxPadding bytes of padding.
// There are exactly four such lengths; the low two bits of r, a random
// byte, pick one.
func TCPPaddedLen(msgLen int, r byte) int {
	return roundUp(msgLen+1) + BlockSize*int(r&3)
}

// grow extends dst by n bytes, reallocating only without enough capacity,
// and returns the whole slice and the new n bytes.
func grow(dst []byte, n int) (ret, tail []byte) {
	ret = slices.Grow(dst, n)[:len(dst)+n]
	return ret, ret[len(dst):]
}
