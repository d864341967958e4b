package daemon

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadPolicy: one fast check raises the setting, it stays up through
// slow checks fewer than calmChecks, and comes down after calmChecks.
func TestLoadPolicy(t *testing.T) {
	const fast = 1000
	p := newLoadPolicy(0, fast)
	var at uint64
	step := func(n uint64) (bool, bool) { at += n; return p.check(at) }
	if high, changed := step(fast - 1); high || changed {
		t.Fatalf("slow check: high %v changed %v", high, changed)
	}
	if high, changed := step(fast); !high || !changed {
		t.Fatalf("fast check: high %v changed %v, want raised", high, changed)
	}
	if high, changed := step(5 * fast); !high || changed {
		t.Fatalf("second fast check: high %v changed %v, want high, unchanged", high, changed)
	}
	for i := 1; i < calmChecks; i++ {
		if high, changed := step(10); !high || changed {
			t.Fatalf("slow check %d while high: high %v changed %v", i, high, changed)
		}
	}
	// A fast check starts the count again.
	step(fast)
	for i := 1; i < calmChecks; i++ {
		step(0)
	}
	if high, changed := step(0); high || !changed {
		t.Fatalf("after %d slow checks: high %v changed %v, want lowered", calmChecks, high, changed)
	}
	if high, changed := step(0); high || changed {
		t.Fatalf("slow check while low: high %v changed %v", high, changed)
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestGCPercentUnderLoad: the process's own GOGC goes up while it allocates
// fast, or while the work it is given to count goes fast, and back down
// once it stops, and is left at base.
func TestGCPercentUnderLoad(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(100) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var moved atomic.Uint64
	go func() { GCPercentUnderLoad(ctx, 90, 350, 64<<20, moved.Load); close(done) }()
	waitGOGC := func(want uint64, work func()) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for gogc() != want {
			if time.Now().After(deadline) {
				t.Fatalf("GOGC %d, want %d", gogc(), want)
			}
			work()
		}
	}
	waitGOGC(90, func() { time.Sleep(time.Millisecond) })
	time.Sleep(3 * loadCheck)
	if g := gogc(); g != 90 {
		t.Fatalf("idle: GOGC %d, want 90", g)
	}
	waitGOGC(350, func() { // about 1 GiB/s
		for range 16 {
			sink = append(sink[:0], make([]byte, 64<<10))
		}
		time.Sleep(time.Millisecond)
	})
	sink = nil
	start := time.Now()
	waitGOGC(90, func() { time.Sleep(time.Millisecond) })
	if d := time.Since(start); d < (calmChecks-1)*loadCheck {
		t.Fatalf("back to base after %v, before %d quiet checks", d, calmChecks)
	}
	// Work counted by moved raises it too, without allocating.
	waitGOGC(350, func() { moved.Add(1 << 20); time.Sleep(time.Millisecond) })
	waitGOGC(90, func() { time.Sleep(time.Millisecond) })
	cancel()
	<-done
	if g := gogc(); g != 90 {
		t.Fatalf("after return: GOGC %d, want 90", g)
	}
}
