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
// thread in the spare (its leader, and so its memory, stays where it was);
// the init is born in the job's cgroup in every hierarchy, never moved;
// no thread of the shim is in the job's cgroup once Start returns; the
// smallest pids limit a job may have, and the smallest memory limit the
// isolator gives a spare to (service.spareMinMemoryMB), leave it room; the
// cgroup is removed once the result is written.
func TestJobStartsInItsShimsSpare(t *testing.T) {
	parent := v1Parent(t)
	p := NewPool(1)
	defer p.Close()
	p.UseSpares(testSpares{parent})
	waitIdle(t, p, 1)
	w := p.Take()
	sp, ok := w.Spare().(testSpare)
	if !ok {
		t.Fatalf("the waiting shim has no spare (%v)", w.Spare())
	}
	for _, d := range sp.Dirs() {
		tids := tidsIn(t, d)
		if len(tids) != 1 || tids[0] == strconv.Itoa(w.Pid()) || !slices.Contains(threadsOf(w.Pid()), tids[0]) {
			t.Fatalf("threads in spare %s: %v, want one of shim %d's but its leader (threads %v)", d, tids, w.Pid(), threadsOf(w.Pid()))
		}
	}

	l := &jobletv1.Limits{MaxMemoryMb: 16, MaxPids: 16, MaxCpuPercent: 50}
	j, err := parent.CreateFromSpare("spare1", l, "", sp.Spare)
	if err != nil {
		t.Fatal(err)
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
	spec := jobSpec(t, "spare1", "sh", "-c", "cat /proc/self/cgroup > /work/cg")
	spec.Placer = j
	proc, err := p.StartWith(w, spec)
	if err != nil {
		t.Fatal(err)
	}
	if proc.InitMoved() {
		t.Error("the init was moved into the job's cgroup, want it born there")
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
	r, err := proc.Wait()
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
	if _, err := proc.Wait(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if left := sparesLeft(t, parent); len(left) > 0 {
		t.Errorf("spares left after Close: %v", left)
	}
	noChildren(t)
}

// A waiting shim that died leaves no spare: Take reaps it and removes its
// spare; so does UseSpares for the shims it replaces.
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
		if _, err := proc.Wait(); err != nil {
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
