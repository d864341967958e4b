package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cgroups "github.com/opencontainers/cgroups"
	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// testSpares makes the pool's spares with a real cgroup.Parent, as the
// isolator's service does.
type testSpares struct{ *cgroup.Parent }

func (s testSpares) NewSpare() (Spare, error) {
	sp, err := s.Parent.NewSpare()
	if err != nil {
		return nil, err
	}
	return testSpare{sp}, nil
}

type testSpare struct{ *cgroup.Spare }

// v1Parent is a job cgroup parent of the test's own on a cgroup v1 host,
// removed (with every spare) at the test's end.
func v1Parent(t *testing.T) *cgroup.Parent {
	t.Helper()
	requiresRoot(t)
	p, err := cgroup.NewParent(zerolog.Nop(), cgroup.Options{Name: fmt.Sprintf("joblet-shimtest-%d", os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	if p.Version() != 1 {
		_ = p.Remove()
		t.Skip("skipping: spare cgroups are for cgroup v1 hosts")
	}
	t.Cleanup(func() {
		if err := p.Remove(); err != nil {
			t.Errorf("remove parent: %v", err)
		}
	})
	return p
}

// tidsIn lists the threads in cgroup dir (its tasks file).
func tidsIn(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// threadsOf lists the threads of pid.
func threadsOf(pid int) []string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var tids []string
	for _, e := range ents {
		tids = append(tids, e.Name())
	}
	return tids
}

// A job whose cgroup is its waiting shim's spare: the shim waits with one
// thread in the spare (its leader, and so its memory, stays where it was),
// and with the job's init, which that thread preforked there: in
// namespaces of its own, waiting at its gate. Once the spare is the job's
// cgroup, the init is in it before its gate opens, never moved; it runs
// the job as PID 1, with the job's hostname and lo only; no thread of the
// shim is in the job's cgroup once Start returns; the smallest pids limit
// a job may have, and the smallest memory limit the isolator gives a spare
// to (service.spareMinMemoryMB), leave it room; the cgroup is removed once
// the result is written.
func TestJobStartsInItsShimsSpare(t *testing.T) {
	parent := v1Parent(t)
	useInitBinary(t)
	p := NewPool(1)
	defer p.Close()
	p.UseSpares(testSpares{parent})
	waitIdle(t, p, 1)
	w := p.Take()
	sp, ok := w.Spare().(testSpare)
	if !ok {
		_ = p.Release(w)
		t.Fatalf("the waiting shim has no spare (%v)", w.Spare())
	}
	init := w.InitPID()
	if init <= 0 {
		_ = p.Release(w)
		t.Fatal("the waiting shim preforked no init")
	}
	for _, d := range sp.Dirs() {
		// The one-thread rule of the shim, with the preforked init beside
		// it: that process is the job's own (its init), not the shim's.
		var shims []string
		for _, tid := range tidsIn(t, d) {
			if !slices.Contains(threadsOf(init), tid) {
				shims = append(shims, tid)
			}
		}
		if len(shims) != 1 || shims[0] == strconv.Itoa(w.Pid()) || !slices.Contains(threadsOf(w.Pid()), shims[0]) {
			_ = p.Release(w)
			t.Fatalf("threads in spare %s but the init's: %v, want one of shim %d's but its leader (threads %v)", d, shims, w.Pid(), threadsOf(w.Pid()))
		}
		if procs := procsIn(d); !slices.Contains(procs, init) {
			_ = p.Release(w)
			t.Fatalf("processes in spare %s: %v, want the preforked init %d", d, procs, init)
		}
	}
	for _, ns := range []string{"pid", "mnt", "uts", "ipc", "net"} {
		shims, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", w.Pid(), ns))
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", init, ns))
		if err != nil || its == shims {
			t.Errorf("%s namespace of the preforked init %q (%v), the shim's %q: want its own", ns, its, err, shims)
		}
	}

	l := &jobletv1.Limits{MaxMemoryMb: 16, MaxPids: 16, MaxCpuPercent: 50}
	j, err := parent.CreateFromSpare("spare1", l, "", sp.Spare)
	if err != nil {
		_ = p.Release(w)
		t.Fatal(err)
	}
	// Before the gate: the init is in the job's cgroup, and has started
	// nothing.
	if held, err := j.Holds(init); !held || err != nil {
		t.Errorf("the preforked init is not in the job's cgroup before its gate (%v)", err)
	}
	if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", init, init)); len(strings.TrimSpace(string(c))) > 0 {
		t.Errorf("the preforked init started %s before its job", c)
	}
	paths := j.Paths()
	if len(paths) != 7 {
		t.Fatalf("paths %v, want every v1 hierarchy", paths)
	}
	for _, d := range sp.Dirs() {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("spare %s still there after it became the job's (%v)", d, err)
		}
	}
	spec := jobSpec(t, "spare1", "sh", "-c", "cat /proc/self/cgroup > /work/cg; hostname > /work/host; tail -n +3 /proc/net/dev > /work/net; read x < /work/go")
	spec.Placer = j
	goOn := holdJob(t, spec.WorkDir)
	proc, err := p.StartWith(w, spec)
	if err != nil {
		t.Fatal(err)
	}
	if proc.InitMoved() || proc.Pid() != init {
		t.Errorf("the job's init %d, moved %v: want the preforked %d, born in the cgroup", proc.Pid(), proc.InitMoved(), init)
	}
	if !sandboxtest.NsPid1(t, init) {
		t.Error("the job's init is not PID 1 of its namespace")
	}
	shimThreads := threadsOf(w.Pid())
	for c, d := range paths {
		for _, tid := range tidsIn(t, d) {
			if slices.Contains(shimThreads, tid) {
				t.Errorf("thread %s of the shim is in the job's %s cgroup after Start", tid, c)
			}
		}
	}
	for c, f := range map[string]string{"memory": "memory.limit_in_bytes", "pids": "pids.max", "cpu": "cpu.cfs_quota_us"} {
		b, _ := os.ReadFile(filepath.Join(paths[c], f))
		if want := map[string]string{"memory": strconv.Itoa(16 << 20), "pids": "16", "cpu": "50000"}[c]; strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, want %s", f, b, want)
		}
	}
	goOn()
	r, err := waitReleased(t, proc)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("result %+v, %v", r, err)
	}
	got, err := cgroups.ParseCgroupFile(filepath.Join(spec.WorkDir, "cg"))
	if err != nil {
		t.Fatal(err)
	}
	for c := range paths {
		if !strings.HasSuffix(got[c], "/spare1") {
			t.Errorf("the command's %s cgroup is %q, want the job's", c, got[c])
		}
	}
	if b, _ := os.ReadFile(filepath.Join(spec.WorkDir, "host")); strings.TrimSpace(string(b)) != spec.Hostname {
		t.Errorf("hostname %q, want %q", b, spec.Hostname)
	}
	if b, _ := os.ReadFile(filepath.Join(spec.WorkDir, "net")); len(strings.Split(strings.TrimSpace(string(b)), "\n")) != 1 || !strings.HasPrefix(strings.TrimSpace(string(b)), "lo:") {
		t.Errorf("interfaces inside the job: %q, want only lo", b)
	}
	if u, err := j.Stats(); err != nil || u.OOMKills != 0 {
		t.Errorf("usage %+v, %v", u, err)
	}
	if err := j.Destroy(); err != nil {
		t.Fatalf("Destroy once the result is written: %v", err)
	}

	// Without a spare the init is moved in: what InitMoved tells is real.
	j2, err := parent.Create("spare2", l, "")
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Destroy()
	spec = jobSpec(t, "spare2", "true")
	spec.Placer = j2
	proc, err = p.StartWith(nil, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !proc.InitMoved() {
		t.Error("an init started without a spare was not moved, yet it is on cgroup v1")
	}
	if _, err := waitReleased(t, proc); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if left := sparesLeft(t, parent); len(left) > 0 {
		t.Errorf("spares left after Close: %v", left)
	}
	noChildren(t)
}

// A waiting shim that died leaves no spare: Take reaps it, waits for the
// init it preforked in the spare to exit, and removes its spare; so does
// UseSpares for the shims it replaces.
func TestSpareOfDeadShimRemoved(t *testing.T) {
	parent := v1Parent(t)
	p := NewPool(1)
	defer p.Close()
	waitIdle(t, p, 1)
	p.UseSpares(testSpares{parent})
	dead := waitIdle(t, p, 1)[0]
	spares := sparesLeft(t, parent)
	if len(spares) == 0 {
		t.Fatal("no spare for the waiting shim")
	}
	p.mu.Lock()
	init := p.idle[0].InitPID()
	p.mu.Unlock()
	if init <= 0 {
		t.Fatal("the waiting shim preforked no init")
	}
	if err := syscall.Kill(dead, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !gone(dead) || p.Take() != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the killed shim was handed out or never reaped")
		}
	}
	for _, s := range spares {
		if _, err := os.Stat(s); !os.IsNotExist(err) {
			t.Errorf("spare %s of the killed shim still there (%v)", s, err)
		}
	}
	if alive(init) {
		t.Errorf("the killed shim's preforked init %d still runs", init)
	}
	p.Close()
	if left := sparesLeft(t, parent); len(left) > 0 {
		t.Errorf("spares left after Close: %v", left)
	}
	noChildren(t)
}

// sparesLeft lists the spare directories under the parent, in any
// hierarchy.
func sparesLeft(t *testing.T, parent *cgroup.Parent) []string {
	t.Helper()
	dirs, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/joblet-shimtest-%d/_spare-*", os.Getpid()))
	more, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/*/*/joblet-shimtest-%d/_spare-*", os.Getpid()))
	return append(dirs, more...)
}

// BenchmarkStartFromSpare times a job's start as the isolator makes it on
// cgroup v1 — its cgroup made (Create, or CreateFromSpare) and its command
// started under a waiting shim — with the shim in a spare and without,
// alternately, after 200 ms of quiet each (a job arriving at an idle
// isolator, when the kernel's cgroup migration lock waits for an RCU grace
// period), and reports the medians.
func BenchmarkStartFromSpare(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipping: needs root")
	}
	parent, err := cgroup.NewParent(zerolog.Nop(), cgroup.Options{Name: fmt.Sprintf("joblet-shimbench-%d", os.Getpid())})
	if err != nil {
		b.Fatal(err)
	}
	defer parent.Remove()
	if parent.Version() != 1 {
		b.Skip("skipping: spares are for cgroup v1")
	}
	spared, plain := NewPool(1), NewPool(1)
	defer spared.Close()
	defer plain.Close()
	spared.UseSpares(testSpares{parent})
	var took [2][]time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		withSpare := i % 2
		pool := map[int]*Pool{0: plain, 1: spared}[withSpare]
		dir := b.TempDir()
		id := fmt.Sprintf("b%d", i)
		spec := Spec{
			ID: id, Hostname: "job", Args: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"},
			RootDir: filepath.Join(dir, "root"), WorkDir: filepath.Join(dir, "work"),
			LogdSocket: filepath.Join(dir, "no-logd.sock"), Result: filepath.Join(dir, "r.json"),
			OutputTimeout: 10 * time.Millisecond,
		}
		for _, d := range []string{spec.RootDir, spec.WorkDir} {
			if err := os.Mkdir(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			pool.mu.Lock()
			n := len(pool.idle)
			pool.mu.Unlock()
			if n > 0 || time.Now().After(deadline) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
		b.StartTimer()
		t0 := time.Now()
		w := pool.Take()
		if w == nil {
			pool.mu.Lock()
			filling, idle := pool.filling, len(pool.idle)
			pool.mu.Unlock() // else the deferred Close waits for it forever
			b.Fatalf("no waiting shim in the pool (spare %v): filling %v, idle %d", withSpare == 1, filling, idle)
		}
		var j *cgroup.Job
		if sp, ok := w.Spare().(testSpare); ok {
			j, err = parent.CreateFromSpare(id, &jobletv1.Limits{MaxPids: 1024}, "", sp.Spare)
		} else {
			j, err = parent.Create(id, &jobletv1.Limits{MaxPids: 1024}, "")
		}
		if err != nil {
			b.Fatal(err)
		}
		spec.Placer = j
		proc, err := pool.StartWith(w, spec)
		took[withSpare] = append(took[withSpare], time.Since(t0))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if proc.InitMoved() == (withSpare == 1) {
			b.Fatalf("init moved %v with spare %v", proc.InitMoved(), withSpare == 1)
		}
		if _, err := waitReleased(b, proc); err != nil {
			b.Fatal(err)
		}
		if err := j.Destroy(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	for k, unit := range []string{"moved-p50-ms", "spare-p50-ms"} {
		if d := took[k]; len(d) > 0 {
			slices.Sort(d)
			b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, unit)
		}
	}
}
