package jobs

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A burst through a gate runs at most its width at once, and as many as
// that when there are enough callers.
func TestGateBound(t *testing.T) {
	g := newGate(gateWidth, time.Minute)
	var mu sync.Mutex
	now, most := 0, 0
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := func() error {
				mu.Lock()
				now++
				most = max(most, now)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
				mu.Lock()
				now--
				mu.Unlock()
				return nil
			}
			if i%2 == 0 {
				_ = g.run(f)
			} else if v, err := gated(g, func() (int, error) { return i, f() }); v != i || err != nil {
				t.Errorf("gated returned %d, %v; want %d, nil", v, err, i)
			}
		}()
	}
	wg.Wait()
	if most != gateWidth {
		t.Errorf("%d calls at once, want %d", most, gateWidth)
	}
}

// A call whose turn does not come within the gate's wait runs without
// one: a stuck call holds up the others that long at most.
func TestGateWaitIsBounded(t *testing.T) {
	const wait = 50 * time.Millisecond
	g := newGate(gateWidth, wait)
	release := make(chan struct{})
	held := make(chan struct{}, gateWidth)
	for range gateWidth {
		go g.run(func() error { held <- struct{}{}; <-release; return nil })
	}
	for range gateWidth {
		<-held
	}
	start := time.Now()
	ran := false
	if err := g.run(func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("run: %v, ran %v", err, ran)
	}
	if d := time.Since(start); d < wait || d > wait+2*time.Second {
		t.Errorf("ran after %v with every turn held, want after about %v", d, wait)
	}
	close(release)
	// The turns come back: a call now runs at once.
	start = time.Now()
	for len(g.turns) > 0 && time.Since(start) < time.Second {
		time.Sleep(time.Millisecond)
	}
	start = time.Now()
	_ = g.run(func() error { return nil })
	if d := time.Since(start); d >= wait {
		t.Errorf("with free turns a call waited %v", d)
	}
}

// The gate's purpose, against the real runtime and kernel: goroutines in
// blocking system calls make the runtime start threads, one per call under
// way; through a gate the process gains at most about its width. Measured
// in a fresh process (the runtime never ends a thread, so threads an
// earlier test made would hide the growth), with the same burst ungated
// after it to show that the burst does make threads without the gate.
func TestGateBoundsThreads(t *testing.T) {
	const burst = 48
	if os.Getenv("JOBLET_GATE_CHILD") == "1" {
		sleep := func() error { return unix.Nanosleep(&unix.Timespec{Nsec: int64(30 * time.Millisecond)}, nil) }
		run := func(f func() error) int {
			before := threads(t)
			var wg, ready sync.WaitGroup
			start := make(chan struct{})
			for range burst {
				wg.Add(1)
				ready.Add(1)
				go func() {
					defer wg.Done()
					ready.Done()
					<-start // all at once
					_ = f()
				}()
			}
			ready.Wait()
			close(start)
			wg.Wait()
			return threads(t) - before
		}
		g := newGate(gateWidth, time.Minute)
		gatedGrowth := run(func() error { return g.run(sleep) })
		ungatedGrowth := run(sleep)
		fmt.Printf("GROWTH %d %d\n", gatedGrowth, ungatedGrowth)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestGateBoundsThreads$", "-test.v")
	cmd.Env = append(os.Environ(), "JOBLET_GATE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var gatedGrowth, ungatedGrowth int
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "GROWTH" {
			gatedGrowth, _ = strconv.Atoi(f[1])
			ungatedGrowth, _ = strconv.Atoi(f[2])
		}
	}
	t.Logf("threads gained by %d blocking calls at once: %d through a gate of %d, %d without", burst, gatedGrowth, gateWidth, ungatedGrowth)
	// The width, plus a thread or two the runtime may start meanwhile
	// (a P handed off while the goroutines queue up).
	if gatedGrowth > gateWidth+2 {
		t.Errorf("through the gate the process gained %d threads, want at most %d", gatedGrowth, gateWidth+2)
	}
	if ungatedGrowth <= gateWidth+2 {
		t.Errorf("without the gate the burst made only %d threads: the measure shows nothing", ungatedGrowth)
	}
}

func threads(t *testing.T) int {
	t.Helper()
	ts, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(ts)
}
