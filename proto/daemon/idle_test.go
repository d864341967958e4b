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

// TestReleasePolicy: when a daemon releases, from the bytes it allocated
// between checks.
func TestReleasePolicy(t *testing.T) {
	const k = 1 << 10
	cases := []struct {
		name  string
		steps []uint64 // bytes allocated before each check
		want  []bool   // release at that check
	}{
		{"a burst: at its first quiet check, and once more when the quiet lasts",
			[]uint64{8 << 20, 1 << 20, 0, 0, 0, 0}, []bool{false, false, true, true, false, false}},
		{"quiet from the start: never", []uint64{0, 0, 0, 0}, []bool{false, false, false, false}},
		{"a health check now and then: never",
			[]uint64{4 * k, 0, 0, 4 * k, 0, 0, 0}, []bool{false, false, false, false, false, false, false}},
		{"some work, less than a burst: once, when the quiet lasts",
			[]uint64{512 * k, 0, 0, 0, 0}, []bool{false, false, true, false, false}},
		{"a quiet check inside a burst does not count as a quiet spell",
			[]uint64{3 << 20, 0, 3 << 20, 0, 0, 0}, []bool{false, false, false, true, true, false}},
		{"a second burst: released again",
			[]uint64{8 << 20, 0, 0, 0, 8 << 20, 0, 0, 0}, []bool{false, true, true, false, false, true, true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var total uint64
			p := newReleasePolicy(total)
			for i, n := range c.steps {
				total += n
				got := p.check(total)
				if got {
					p.released(total)
				}
				if got != c.want[i] {
					t.Fatalf("check %d (after %d more bytes): release %v, want %v", i, n, got, c.want[i])
				}
			}
		})
	}
}
