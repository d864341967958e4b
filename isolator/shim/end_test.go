package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdExit traces pid (PTRACE_SEIZE, PTRACE_O_TRACEEXIT) so that it stops
// as it exits, before it is gone: the kernel holds it at its exit event,
// its pidfd not readable, until release is closed. held is closed once it
// is held there. Every ptrace call is made from one locked thread, as the
// kernel requires of a tracer. Other stops (the Go runtime's signals) are
// continued with their signal.
func holdExit(t *testing.T, pid int) (held, release chan struct{}) {
	t.Helper()
	held, release = make(chan struct{}), make(chan struct{})
	seized := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, unix.PTRACE_O_TRACEEXIT, 0, 0); e != 0 {
			seized <- fmt.Errorf("PTRACE_SEIZE: %w", e)
			return
		}
		seized <- nil
		for {
			var ws unix.WaitStatus
			if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
				if err == unix.EINTR {
					continue
				}
				return
			}
			if !ws.Stopped() {
				return // exited: not held (the test then fails on held)
			}
			if ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_EXIT {
				close(held)
				<-release
				_ = unix.PtraceDetach(pid)
				return
			}
			sig := 0
			if ws.TrapCause() <= 0 && ws.StopSignal() != unix.SIGTRAP {
				sig = int(ws.StopSignal()) // a signal-delivery stop: deliver it
			}
			_ = unix.PtraceCont(pid, sig)
		}
	}()
	if err := <-seized; err != nil {
		t.Fatal(err)
	}
	return held, release
}

// TestEndSeenBeforeTheShimExits: the job's result is read as soon as the
// shim has written it and closed its status pipe, while the shim itself
// has not exited (held at its exit by a tracer): the isolator does not
// wait for the shim's teardown; Release then waits for it. It fails if Wait
// waits for the shim's exit.
func TestEndSeenBeforeTheShimExits(t *testing.T) {
	requiresRoot(t)
	w, err := Prestart()
	if err != nil {
		t.Fatal(err)
	}
	held, release := holdExit(t, w.Pid())
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	p, err := w.Start(jobSpec(t, "held", "/bin/sh", "-c", "exit 7"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not reach its exit")
	}
	type waited struct {
		r   Result
		err error
	}
	got := make(chan waited, 1)
	go func() {
		r, err := p.Wait()
		got <- waited{r, err}
	}()
	select {
	case g := <-got:
		if g.err != nil || g.r.ExitCode != 7 {
			t.Fatalf("Wait = %+v, %v; want exit code 7", g.r, g.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return while the shim was held at its exit")
	}
	select {
	case <-p.exited:
		t.Fatal("the shim exited while held")
	default:
	}
	// Release (after the job's end is recorded) waits for the shim's exit,
	// so that nothing of an ended job outlives its supervision.
	rel := make(chan error, 1)
	go func() { rel <- p.Release() }()
	select {
	case err := <-rel:
		t.Fatalf("Release returned while the shim was held: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	released = true
	close(release)
	select {
	case err := <-rel:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Release did not return once the shim was let exit")
	}
	if !gone(w.Pid()) {
		t.Fatalf("shim %d not reaped after Release", w.Pid())
	}
	noChildren(t)
}

// BenchmarkResultSeen times how long after the shim's result is made
// (Result.EndedAt, taken before the file is written) the isolator's Wait
// returns it: the result file's write, and the notice of it (the status
// pipe's EOF; before, the shim's exit). The job's start and its output's
// end (10 ms for the output to its missing logd) are not timed: the
// figures are the seen-p50-ms and seen-p90-ms metrics, not ns/op.
func BenchmarkResultSeen(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipping: a shim's job needs root to create namespaces and mounts")
	}
	p := NewPool(1)
	defer p.Close()
	var seen []time.Duration
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		spec := Spec{
			ID: strconv.Itoa(i), Hostname: "job", Args: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"},
			RootDir: filepath.Join(dir, "root"), WorkDir: filepath.Join(dir, "work"),
			LogdSocket: filepath.Join(dir, "no-logd.sock"), Result: filepath.Join(dir, "r.json"),
			OutputTimeout: 10 * time.Millisecond,
		}
		for _, d := range []string{spec.RootDir, spec.WorkDir} {
			if err := os.Mkdir(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		proc, err := p.Start(spec)
		if err != nil {
			b.Fatal(err)
		}
		r, err := proc.Wait()
		if err != nil {
			b.Fatal(err)
		}
		seen = append(seen, time.Since(r.EndedAt))
		if err := proc.Release(); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(seen)
	b.ReportMetric(float64(seen[len(seen)/2].Microseconds())/1000, "seen-p50-ms")
	b.ReportMetric(float64(seen[len(seen)*9/10].Microseconds())/1000, "seen-p90-ms")
}

// TestCommandEndedBeforeTheLogIsComplete: the shim tells the command's end
// (CommandEnded) at once, while it still waits for logd (here missing, for
// the whole OutputTimeout) to take the rest of the output; Wait's result
// comes only after that wait, with the output incomplete. It fails if the
// command's end is told only with the result.
func TestCommandEndedBeforeTheLogIsComplete(t *testing.T) {
	requiresRoot(t)
	w, err := Prestart()
	if err != nil {
		t.Fatal(err)
	}
	spec := jobSpec(t, "told", "/bin/sh", "-c", "exit 3")
	const outputWait = 4 * time.Second
	spec.OutputTimeout = outputWait
	start := time.Now()
	p, err := w.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.CommandEnded():
	case <-time.After(outputWait / 2):
		t.Fatalf("the command's end not told %v after the start, while the shim waits %v for logd", outputWait/2, outputWait)
	}
	select {
	case <-p.ended:
		t.Fatal("the job's result came before the shim gave up on logd")
	default:
	}
	r, err := p.Wait()
	if err != nil || r.ExitCode != 3 || r.OutputComplete {
		t.Fatalf("Wait = %+v, %v; want exit code 3, output incomplete", r, err)
	}
	if d := time.Since(start); d < outputWait {
		t.Fatalf("result after %v, before the %v wait for logd was over", d, outputWait)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	noChildren(t)
}

// TestResultSentAndLeftForTheNextIsolator: the isolator takes the job's
// result from the status pipe, and the shim still leaves it in its result
// file, for an isolator that restarts before it recorded the job's end:
// adopted from the file, the result is the same. Release, once the shim
// has exited, removes the file.
func TestResultSentAndLeftForTheNextIsolator(t *testing.T) {
	requiresRoot(t)
	w, err := Prestart()
	if err != nil {
		t.Fatal(err)
	}
	spec := jobSpec(t, "left", "/bin/sh", "-c", "kill -TERM $$")
	p, err := w.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := p.Wait()
	if err != nil || sent.Signal != int(unix.SIGTERM) || sent.ExitCode != 128+int(unix.SIGTERM) {
		t.Fatalf("Wait = %+v, %v; want killed by SIGTERM", sent, err)
	}
	if p.result == nil {
		t.Fatal("the result was not taken from the status pipe")
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not exit after its result")
	}
	// The isolator that read the pipe "restarts" here: the next one finds
	// the shim gone and its result file.
	adopted, err := Adopt(p.shim, p.init, spec.Result)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	left, err := adopted.Wait()
	if err != nil || left.ExitCode != sent.ExitCode || left.Signal != sent.Signal || !left.EndedAt.Equal(sent.EndedAt) {
		t.Fatalf("result file %+v, %v; want %+v", left, err, sent)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spec.Result); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("result file left after Release: %v", err)
	}
	noChildren(t)
}
