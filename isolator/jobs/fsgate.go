package jobs

import "time"

// A goroutine in a slow filesystem call (a cgroup's mkdir or rmdir behind
// the kernel's cgroup lock, a job directory's mkdir or unlink: 4-10 ms
// each with 32 jobs starting and ending at once) holds its OS thread in
// the kernel, and the Go runtime starts another thread for the other
// goroutines meanwhile. It keeps every thread it ever made, and each
// keeps its stacks (about 48 KiB) in the RSS: the isolator went from 9 to
// 40-50 threads after a burst of 1000 jobs. So the per-job calls of this
// package that block in the kernel take a turn at a gate first: at most
// gateWidth of them are in the kernel at once, and the goroutines waiting
// for a turn are parked, which holds no thread. The calls mostly wait on
// the same kernel locks (one cgroup hierarchy, one parent directory), so
// running fewer at once costs little. Starts and cleanups have gates of
// their own, so that no job's start waits behind the removal of an ended
// job's directories. The gates bound the whole process's threads, so
// they are the package's, not a Registry's.
//
// A call waits for a turn at most gateWait: a call that takes long (an
// ended job's cgroup whose last process takes seconds to die, which its
// removal waits for) must not hold up every other job's start or end.
// Past it, the call runs without a turn, which costs at most a thread.
var (
	startFS   = newGate(gateWidth, gateWait) // a starting job's cgroup and directories
	cleanupFS = newGate(gateWidth, gateWait) // an ended job's cgroup and directories
)

const (
	gateWidth = 2                      // calls a gate lets into the kernel at once
	gateWait  = 250 * time.Millisecond // the longest a call waits for a turn
)

// gate lets at most its width of calls run at once, and none wait for a
// turn longer than its wait.
type gate struct {
	turns chan struct{}
	wait  time.Duration
}

func newGate(width int, wait time.Duration) *gate {
	return &gate{turns: make(chan struct{}, width), wait: wait}
}

// run calls f once it has a turn, or has waited g.wait.
func (g *gate) run(f func() error) error {
	_, err := gated(g, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// gated calls f once it has a turn at g, or has waited g.wait, for a call
// that returns a value.
func gated[T any](g *gate, f func() (T, error)) (T, error) {
	select {
	case g.turns <- struct{}{}:
	default:
		t := time.NewTimer(g.wait)
		select {
		case g.turns <- struct{}{}:
			t.Stop()
		case <-t.C:
			return f() // without a turn: see gateWait
		}
	}
	defer func() { <-g.turns }()
	return f()
}
