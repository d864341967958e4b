package manager

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/netdapi"
)

// The cost of a job's start and end in netd: one Attach and one Detach, on
// the real kernel (in the test's private netns). Besides ns/op (wall) each
// reports attach-µs/op and detach-µs/op (wall of each call) and cpu-µs/op,
// netd's own CPU (user+system of this process: the netlink and mount
// syscalls included, the kernel's deferred work in kworkers, such as
// freeing a network namespace, not).
//
// The bridge/ahead cases keep 2 namespaces made ahead (spare.go):
// ahead-warm gives each Attach a ready one (it waits, off the clock, for
// the refill and the last job's teardown, as a job coming now and then
// finds netd), ahead and
// ahead-parallel attach back to back, faster than the spares are made.
//
//	go test -run '^$' -bench AttachDetach -benchtime 300x ./manager
func BenchmarkAttachDetach(b *testing.B) {
	for _, c := range []struct {
		name, network string
		held          int // leases of other jobs held meanwhile (the state file's size)
		parallel      bool
		// spares: namespaces made ahead (spare.go); warm: each Attach
		// waits, off the clock, until they are all ready.
		spares int
		warm   bool
	}{
		{"none", netdapi.None, 0, false, 0, false},
		{"bridge", netdapi.Bridge, 0, false, 0, false},
		{"none/held200", netdapi.None, 200, false, 0, false},
		{"bridge/held200", netdapi.Bridge, 200, false, 0, false},
		{"none/parallel", netdapi.None, 0, true, 0, false},
		{"bridge/parallel", netdapi.Bridge, 0, true, 0, false},
		{"bridge/ahead-warm", netdapi.Bridge, 0, false, 2, true},
		{"bridge/ahead", netdapi.Bridge, 0, false, 2, false},
		{"bridge/ahead-parallel", netdapi.Bridge, 0, true, 2, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := setup(b)
			e.opts.CheckInterval = -1
			if c.spares > 0 {
				e.opts.Spares = c.spares
			}
			e.opts.Log = zerolog.New(io.Discard) // encoded as in netd, not printed
			m := e.open(b)
			ctx := context.Background()
			for i := range c.held {
				if _, err := m.Attach(ctx, fmt.Sprint("held", i), netdapi.None, ""); err != nil {
					b.Fatal(err)
				}
			}
			var attachNs, detachNs, seq atomic.Int64
			one := func() {
				id := fmt.Sprint("b", seq.Add(1))
				if c.warm {
					b.StopTimer()
					m.teardowns.Wait() // the last job's veth pair is gone
					waitWarm(m, c.network)
					b.StartTimer()
				}
				t0 := time.Now()
				if _, err := m.Attach(ctx, id, c.network, ""); err != nil {
					b.Error(err)
					return
				}
				t1 := time.Now()
				if err := m.Detach(ctx, id); err != nil {
					b.Error(err)
				}
				attachNs.Add(int64(t1.Sub(t0)))
				detachNs.Add(int64(time.Since(t1)))
			}
			cpu0 := cpuTime(b)
			b.ResetTimer()
			if c.parallel {
				b.SetParallelism(2) // 2×GOMAXPROCS callers, like the isolator starting jobs at once
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						one()
					}
				})
			} else {
				for b.Loop() {
					one()
				}
			}
			m.teardowns.Wait() // Detach returns before the veth pair is gone: count its CPU
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/n, "cpu-µs/op")
			b.ReportMetric(float64(attachNs.Load())/1e3/n, "attach-µs/op")
			b.ReportMetric(float64(detachNs.Load())/1e3/n, "detach-µs/op")
			detachAll(b, m)
		})
	}
}

// waitWarm waits until a network has all its spares ready.
func waitWarm(m *Manager, network string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for n := m.nets[network]; len(n.spares) < m.spares; {
		m.torn.Wait()
	}
}

// cpuTime is this process's user+system CPU so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	must(tb, unix.Getrusage(unix.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
