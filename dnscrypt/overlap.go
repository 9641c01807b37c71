package dnscrypt

import "unsafe"

// The overlap checks of golang.org/x/crypto/internal/alias, which other
// modules cannot import. They compare addresses and allocate nothing.

// appended returns the n bytes that appending n bytes to dst writes in
// dst's spare capacity, or nil when the capacity is too small: the append
// then moves to new memory, which overlaps nothing. It is the slice
// [grow] returns as its tail.
func appended(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		return nil
	}
	return dst[len(dst) : len(dst)+n]
}

// anyOverlap reports whether x and y share memory at any index, not
// necessarily a corresponding one. Memory beyond the lengths is ignored.
func anyOverlap(x, y []byte) bool {
	return len(x) > 0 && len(y) > 0 &&
		uintptr(unsafe.Pointer(&x[0])) <= uintptr(unsafe.Pointer(&y[len(y)-1])) &&
		uintptr(unsafe.Pointer(&y[0])) <= uintptr(unsafe.Pointer(&x[len(x)-1]))
}

// inexactOverlap reports whether x and y share memory at a
// non-corresponding index: they overlap and do not start at the same
// address.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	return anyOverlap(x, y)
}
