package daemon

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

var sink [][]byte

// TestReleaseWhenIdle: after a burst of allocation, once the process is
// quiet, the freed heap goes back to the OS within a few checks.
func TestReleaseWhenIdle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ReleaseWhenIdle(ctx)
	time.Sleep(10 * time.Millisecond)
	for range 64 {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		sink = append(sink, b)
	}
	sink = nil
	runtime.GC() // freed, but kept by the runtime
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	if before < 32<<20 {
		t.Skipf("the runtime kept only %d free bytes after the burst: nothing to observe", before)
	}
	deadline := time.Now().Add(4 * idleCheck)
	for {
		metrics.Read(s)
		if free := s[0].Value.Uint64(); free < 8<<20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("free heap %d bytes (%d after the burst), not released while idle", s[0].Value.Uint64(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
