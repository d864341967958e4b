package daemon

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A high GOGC saves a daemon that turns a stream of bytes into garbage
// (logd under a GiB of output) hundreds of collections, but it also sets
// the heap it lets grow before its first collection: 4 MiB × GOGC/100,
// 16 MiB at GOGC=400. A burst of small calls reaches that peak too, and
// the runtime sizes metadata it never returns by the peak (RSS after 1000
// jobs was 1.15–1.18× logd's rest). So the high setting is applied only
// while the process allocates fast, and the default one otherwise.
const (
	loadCheck  = 100 * time.Millisecond
	calmChecks = 10 // slow checks in a row before going back to the base percent
)

// GCPercentUnderLoad runs until ctx is done: while the process allocates
// at least rate bytes per second (measured over 100 ms), the collector
// runs at GOGC=high; once it has done less for a second, at base. With
// moved non-nil, the bytes it returns (a count that only grows: output
// stored, say) count as well as those allocated, for work that is fast
// without allocating much. It starts at base, and leaves the setting at
// base when it returns.
func GCPercentUnderLoad(ctx context.Context, base, high int, rate uint64, moved func() uint64) {
	t := time.NewTicker(loadCheck)
	defer t.Stop()
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(s)
		n := s[0].Value.Uint64()
		if moved != nil {
			n += moved()
		}
		return n
	}
	p := newLoadPolicy(read(), rate*uint64(loadCheck)/uint64(time.Second))
	debug.SetGCPercent(base)
	defer debug.SetGCPercent(base)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if fast, changed := p.check(read()); changed {
			if fast {
				debug.SetGCPercent(high)
			} else {
				debug.SetGCPercent(base)
			}
		}
	}
}

// loadPolicy decides, at each loadCheck, from the bytes allocated so far,
// whether the high setting applies.
type loadPolicy struct {
	last   uint64 // allocated at the previous check
	fast   uint64 // bytes per check that count as fast
	high   bool
	calmed int // slow checks in a row while high
}

func newLoadPolicy(allocated, fast uint64) *loadPolicy {
	return &loadPolicy{last: allocated, fast: fast}
}

// check takes the bytes allocated so far and returns whether the high
// setting applies now and whether that changed.
func (p *loadPolicy) check(allocated uint64) (high, changed bool) {
	fast := allocated-p.last >= p.fast
	p.last = allocated
	switch {
	case fast:
		p.calmed = 0
		changed = !p.high
		p.high = true
	case p.high:
		p.calmed++
		if p.calmed >= calmChecks {
			p.high, p.calmed, changed = false, 0, true
		}
	}
	return p.high, changed
}
