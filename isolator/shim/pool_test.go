package shim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
	"github.com/joblet-dev/joblet/isolator/shim/shimproc"
	"github.com/joblet-dev/joblet/proto/errdefs"
)

// TestMain lets the test binary act as a shim and as a job's init, as the
// isolator does.
func TestMain(m *testing.M) {
	if sandbox.IsInit() {
		sandbox.Init()
	}
	if shimproc.IsShim() {
		shimproc.Main()
	}
	os.Exit(m.Run())
}

func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: a shim's job needs root to create namespaces and mounts")
	}
}

// jobSpec is a job running args in the real sandbox. Its logd does not
// exist, so the shim gives up on the output after 100 ms and records the
// result with the output incomplete.
func jobSpec(t *testing.T, id string, args ...string) Spec {
	dir := t.TempDir()
	return Spec{
		ID: id, Hostname: "job-" + id, Args: args, Env: []string{"PATH=/usr/bin:/bin"},
		RootDir: t.TempDir(), WorkDir: t.TempDir(),
		LogdSocket: filepath.Join(dir, "no-logd.sock"), Result: filepath.Join(dir, id+".json"),
		OutputTimeout: 100 * time.Millisecond,
	}
}

// waitReleased waits for p's result as the isolator does, then releases
// it: waits for the shim's exit and removes its result file, which the
// shim writes after sending the result (Wait), so that the test's temp
// dirs are not written to while they are removed.
func waitReleased(tb testing.TB, p *Process) (Result, error) {
	tb.Helper()
	r, err := p.Wait()
	if rerr := p.Release(); rerr != nil {
		tb.Errorf("release: %v", rerr)
	}
	return r, err
}

// waitIdle waits until n shims wait in p and returns their pids.
func waitIdle(t *testing.T, p *Pool, n int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		var pids []int
		for _, w := range p.idle {
			pids = append(pids, w.Pid())
		}
		p.mu.Unlock()
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d shims waiting after 10 s, want %d", len(pids), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noChildren fails unless this process has no child left (no shim, no
// zombie) within a few seconds.
func noChildren(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := sandboxtest.Children(t)
		if len(c) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("children left: %v", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// runJob starts args under p and waits for the job's result.
func runJob(t *testing.T, p *Pool, id string, args ...string) (*Process, Result) {
	t.Helper()
	proc, err := p.Start(jobSpec(t, id, args...))
	if err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	r, err := waitReleased(t, proc)
	if err != nil {
		t.Fatalf("wait %v: %v", args, err)
	}
	return proc, r
}

// A job starts under the shim that was waiting before the call, and the
// next one under its replacement, also started before that call.
func TestPoolUsesWarmShim(t *testing.T) {
	requiresRoot(t)
	p := NewPool(1)
	defer p.Close()
	for i := range 3 {
		warm := waitIdle(t, p, 1)[0]
		proc, r := runJob(t, p, fmt.Sprint(i+1), "sh", "-c", "exit 3")
		if proc.Shim().PID != warm {
			t.Fatalf("job %d ran under shim %d, not the waiting shim %d", i+1, proc.Shim().PID, warm)
		}
		if r.ExitCode != 3 || r.OutputComplete {
			t.Fatalf("result %+v", r)
		}
		// The result is read before the shim's exit (its Go teardown):
		// the shim exits, and is reaped, right after.
		select {
		case <-proc.exited:
		case <-time.After(5 * time.Second):
			t.Fatalf("the job's shim %d is left 5 s after its result", warm)
		}
		if !gone(warm) {
			t.Fatalf("the job's shim %d is not reaped", warm)
		}
	}
	p.Close()
	noChildren(t)
}

// A waiting shim that was killed is not given a job: the job starts under
// another, and the dead one is reaped.
func TestPoolSkipsDeadShim(t *testing.T) {
	requiresRoot(t)
	p := NewPool(1)
	defer p.Close()
	dead := waitIdle(t, p, 1)[0]
	pidfd, err := unix.PidfdOpen(dead, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil {
		t.Fatal(err)
	}
	// Dead, but maybe not yet seen by its watcher: Start must find out.
	// Dead is its pidfd readable, every thread gone: a zombie leader ("Z"
	// in /proc/<pid>/stat) whose other threads are still exiting is not
	// dead yet to Take (its pidfd), and the job given to it would fail.
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 5000); n != 1 || err != nil {
		t.Fatalf("killed shim still running (%v)", err)
	}
	proc, r := runJob(t, p, "1", "true")
	if proc.Shim().PID == dead {
		t.Fatal("the job was given the killed shim")
	}
	if r.ExitCode != 0 {
		t.Fatalf("result %+v", r)
	}
	if !gone(dead) {
		t.Fatalf("killed shim %d not reaped", dead)
	}
	p.Close()
	noChildren(t)
}

// A signal to the thread that asks whether a waiting shim still waits is no
// sign of the shim's death: the Go runtime preempts goroutines with SIGURG,
// and the isolator gets SIGCHLD for every shim's exit. Taken for one (its
// poll's EINTR), Take killed live shims, and BenchmarkStartFromSpare found
// its pool empty.
func TestWaitingShimAliveUnderSignals(t *testing.T) {
	requiresRoot(t)
	p := NewPool(1)
	defer p.Close()
	pid := waitIdle(t, p, 1)[0]
	p.mu.Lock()
	w := p.idle[0]
	p.mu.Unlock()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			default:
				_ = unix.Tgkill(os.Getpid(), tid, unix.SIGURG)
			}
		}
	}()
	calls, deadline := 0, time.Now().Add(time.Second)
	for ; time.Now().Before(deadline) && w.Alive(); calls++ {
	}
	close(stop)
	<-stopped
	if time.Now().Before(deadline) {
		t.Fatalf("shim %d said dead after %d calls while it waits (%s)", pid, calls, procState(pid))
	}
	if got := p.Take(); got == nil || got.Pid() != pid {
		t.Fatalf("Take gave %v, want the waiting shim %d", got, pid)
	} else if err := p.Release(got); err != nil {
		t.Fatal(err)
	}
	p.Close()
	noChildren(t)
}

// procState is the state letter of pid in /proc, "gone" when it has none.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return "state " + s[i+2:i+3]
	}
	return s
}

// Close stops the waiting shims, reaped, also while one is being started.
func TestPoolClose(t *testing.T) {
	requiresRoot(t)
	p := NewPool(2)
	pids := waitIdle(t, p, 2)
	p.Close()
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("waiting shim %d left after Close", pid)
		}
	}
	noChildren(t)

	NewPool(2).Close() // its first shim is still starting
	noChildren(t)
}

// A shim whose spec pipe closes without a spec (its isolator died) exits at
// once, having started nothing.
func TestIdleShimExitsWithoutSpec(t *testing.T) {
	requiresRoot(t)
	w, err := Prestart()
	if err != nil {
		t.Fatal(err)
	}
	w.specW.Close()
	select {
	case <-w.exited:
	case <-time.After(5 * time.Second):
		w.Close()
		t.Fatal("the shim did not exit when its spec pipe closed")
	}
	b, _ := io.ReadAll(w.statR)
	w.statR.Close()
	if !strings.Contains(string(b), `"type":"error"`) || !strings.Contains(string(b), "read spec") {
		t.Fatalf("status %q", b)
	}
	noChildren(t)
}

type failingPlacer struct{}

func (failingPlacer) Place(int) (map[string]string, error) {
	return nil, errors.New("no scope for you")
}

// A failed start leaves no shim and no zombie: the shim's own error (a
// command not found) and ours (its cgroup cannot be made).
func TestFailedStartReaps(t *testing.T) {
	requiresRoot(t)
	p := NewPool(1)
	defer p.Close()
	_, err := p.Start(jobSpec(t, "1", "no-such-command-joblet"))
	if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != "command not found: no-such-command-joblet" {
		t.Fatalf("got %v, want not found: command not found", err)
	}
	spec := jobSpec(t, "2", "true")
	spec.Placer = failingPlacer{}
	if _, err := p.Start(spec); err == nil || !strings.Contains(err.Error(), "no scope for you") {
		t.Fatalf("got %v, want the placer's error", err)
	}
	if _, err := os.Stat(spec.Result); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a result was left: %v", err)
	}
	p.Close()
	noChildren(t)
}

// No OS thread waits for a running shim: the test process's threads stay
// flat while more and more jobs run, started in parallel.
func TestThreadsFlatWhileShimsRun(t *testing.T) {
	requiresRoot(t)
	p := NewPool(1)
	defer p.Close()
	var mu sync.Mutex
	var procs []*Process
	defer func() {
		for _, proc := range procs {
			_ = proc.Kill()
			if _, err := waitReleased(t, proc); err != nil {
				t.Errorf("wait: %v", err)
			}
		}
		p.Close()
		noChildren(t)
	}()
	startN := func(first, n int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		next := make(chan int, n)
		for i := range n {
			next <- first + i
		}
		close(next)
		for range 4 {
			wg.Go(func() {
				for i := range next {
					proc, err := p.Start(jobSpec(t, strconv.Itoa(i), "sleep", "60"))
					if err != nil {
						errs <- err
						continue
					}
					mu.Lock()
					procs = append(procs, proc)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// The first round lets the runtime make the threads that 4 concurrent
	// forks need; the second, three times as many jobs, must add none.
	startN(1, 4)
	before := threads(t)
	startN(5, 12)
	after := threads(t)
	t.Logf("threads: %d with 4 jobs running, %d with 16", before, after)
	if after > before+2 {
		t.Fatalf("threads grew from %d to %d with 12 more running shims", before, after)
	}
}

// BenchmarkStart times a job's start (the call until the job runs) under a
// new shim and under a waiting one, alternately, so that both see the same
// load, and reports the medians (on a loaded machine the mean is the
// outliers'). The job's end (100 ms for the output to its missing logd) is
// not timed, and lets the pool refill.
func BenchmarkStart(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipping: a shim's job needs root to create namespaces and mounts")
	}
	p := NewPool(1)
	defer p.Close()
	cold := NewPool(0) // no shim waits: each start makes its own
	var took [2][]time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		spec := Spec{
			ID: strconv.Itoa(i), Hostname: "job", Args: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"},
			RootDir: filepath.Join(dir, "root"), WorkDir: filepath.Join(dir, "work"),
			LogdSocket: filepath.Join(dir, "no-logd.sock"), Result: filepath.Join(dir, "r.json"),
			OutputTimeout: 100 * time.Millisecond,
		}
		for _, d := range []string{spec.RootDir, spec.WorkDir} {
			if err := os.Mkdir(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		warm := i % 2
		pool := map[int]*Pool{0: cold, 1: p}[warm]
		b.StartTimer()
		t0 := time.Now()
		proc, err := pool.Start(spec)
		took[warm] = append(took[warm], time.Since(t0))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := waitReleased(b, proc); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	for warm, unit := range []string{"cold-p50-ms", "warm-p50-ms"} {
		if d := took[warm]; len(d) > 0 {
			slices.Sort(d)
			b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, unit)
		}
	}
}

// TestJobInitRunsFromTheInheritedInitBinary: with an init binary set in
// the isolator (sandbox.UseInitBinary), a shim inherits its sealed copy and
// the job's init runs from it, not from the shim's own binary. Later tests
// in this process keep the init binary: jobs run the same either way.
// No reaper is set: the init would become it once the command runs.
func TestJobInitRunsFromTheInheritedInitBinary(t *testing.T) {
	requiresRoot(t)
	sandbox.DropReaper()
	bin := sandboxtest.BuildInit(t, "..")
	if err := sandbox.UseInitBinary(bin); err != nil {
		t.Fatal(err)
	}
	p, err := Start(jobSpec(t, "initbin1", "sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.CheckRunsFromInitBinary(t, p.Pid(), bin)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if r, err := waitReleased(t, p); err != nil || r.Signal != int(syscall.SIGKILL) {
		t.Fatalf("Wait: %+v, %v", r, err)
	}
}
