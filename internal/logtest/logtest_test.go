package logtest

import (
	"sync"
	"testing"
)

// TestBuffer: lines from concurrent writers all arrive whole, and a reader
// may read while they write.
func TestBuffer(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Logger().Info("hello", "k", 1)
				_ = b.Contains("nothing")
			}
		}()
	}
	wg.Wait()
	if n := b.Count("msg=hello k=1\n"); n != 800 {
		t.Fatalf("%d lines, want 800:\n%s", n, b.String())
	}
	if b.Contains("nothing") {
		t.Fatal("Contains found what was never written")
	}
}
