package daemon

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A daemon's heap grows with a burst of work (a thousand jobs, a GiB of
// output) and the Go runtime keeps what the burst freed: nothing collects
// an idle heap but the two-minute forced collection, and the scavenger
// hands pages back slowly. So once a daemon has gone quiet after having
// allocated releaseAfter bytes, it collects and returns its free memory to
// the OS at once; and once more when the quiet has lasted settleChecks:
// the tail of a burst (the last jobs' logs closed, their records saved)
// frees memory after the first release, which would otherwise stay until
// the next burst (logd stayed at 1.4x its rest after 1000 jobs). A quiet
// spell after less work (idleBytes or more, less than releaseAfter) gets
// that second release alone. No collection happens while it works, at
// most two per quiet spell, and none for the odd health check.
const (
	idleCheck    = 500 * time.Millisecond
	idleBytes    = 128 << 10 // at most this allocated in an idleCheck: quiet
	releaseAfter = 4 << 20   // allocated since the last release: worth one
	settleChecks = 2         // quiet checks in a row before the second release
)

// ReleaseWhenIdle runs until ctx is done. Every daemon runs it (Main);
// the embedded supervisor, which is not one, calls it itself.
func ReleaseWhenIdle(ctx context.Context) {
	t := time.NewTicker(idleCheck)
	defer t.Stop()
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	p := newReleasePolicy(read())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.check(read()) {
			debug.FreeOSMemory()
			p.released(read())
		}
	}
}

// releasePolicy decides, at each idleCheck, from the bytes allocated so
// far, whether to release (see the top of the file).
type releasePolicy struct {
	last     uint64 // allocated at the previous check
	release  uint64 // allocated after the last release
	quietFor int    // quiet checks in a row
	early    bool   // this quiet spell began with a release
}

func newReleasePolicy(allocated uint64) *releasePolicy {
	return &releasePolicy{last: allocated, release: allocated}
}

// check takes the bytes allocated so far and reports whether to release
// now; the caller then calls released.
func (p *releasePolicy) check(allocated uint64) bool {
	quiet := allocated-p.last <= idleBytes
	p.last = allocated
	if !quiet {
		p.quietFor, p.early = 0, false
		return false
	}
	p.quietFor++
	since := allocated - p.release
	switch {
	case since >= releaseAfter:
		p.early = p.quietFor < settleChecks
		return true
	case p.quietFor == settleChecks:
		return p.early || since >= idleBytes
	}
	return false
}

// released records a release, with the bytes allocated once it was done.
func (p *releasePolicy) released(allocated uint64) {
	p.release, p.last = allocated, allocated
}
