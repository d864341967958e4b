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
// the OS at once: one collection per quiet spell, none while it works.
const (
	idleCheck    = 500 * time.Millisecond
	idleBytes    = 128 << 10 // at most this allocated in an idleCheck: quiet
	releaseAfter = 4 << 20   // allocated since the last release: worth one
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
	last := read()
	released := last
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := read()
		quiet := now-last <= idleBytes
		last = now
		if quiet && now-released >= releaseAfter {
			debug.FreeOSMemory()
			released = read()
		}
	}
}
