package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/isolator/limits"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

func runWith(t *testing.T, f *fixture, l *jobletv1.Limits, cmd string, args ...string) (*jobletv1.Job, error) {
	t.Helper()
	return f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: cmd, Args: args, Limits: l})
}

// The record holds the limits the job runs with: the request's, with the
// daemon's defaults filled in, in canonical form; the cgroup gets the same.
func TestEffectiveLimitsRecorded(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Limits = limits.Defaults{CPUPercent: 300, MemoryMB: 512}
	})
	j, err := runWith(t, f, &jobletv1.Limits{CpuCores: "1,0", MaxIoBps: 1 << 20}, "true")
	if err != nil {
		t.Fatal(err)
	}
	want := &jobletv1.Limits{MaxCpuPercent: 200, MaxMemoryMb: 512, MaxIoBps: 1 << 20, CpuCores: "0-1", MaxPids: limits.DefaultPids}
	if got := j.GetLimits(); got.String() != want.String() {
		t.Errorf("recorded limits %v, want %v", got, want)
	}
	f.wait(j.GetId())
	f.cg.mu.Lock()
	got := f.cg.limits[j.GetId()]
	f.cg.mu.Unlock()
	if got.String() != want.String() {
		t.Errorf("cgroup created with %v, want %v", got, want)
	}
	if stored := f.stored(j.GetId()).Job.GetLimits(); stored.String() != want.String() {
		t.Errorf("stored limits %v, want %v", stored, want)
	}
}

// A refused request leaves nothing: no id used, no record, no workspace,
// no cgroup.
func TestBadLimitsLeaveNothing(t *testing.T) {
	f := newFixture(t, nil)
	for _, l := range []*jobletv1.Limits{
		{MaxCpuPercent: 10000}, // more than the host's 4 CPUs
		{CpuCores: "1,,2"},
		{CpuCores: "3-1"},
		{CpuCores: "99"},
		{MaxMemoryMb: 1},
		{MaxMemoryMb: 1 << 20},
		{CpuCores: "0", MaxCpuPercent: 150},
	} {
		if _, err := runWith(t, f, l, "true"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("limits %v: err %v, want invalid argument", l, err)
		}
	}
	if jobs, _ := f.reg.List(context.Background()); len(jobs) != 0 {
		t.Errorf("refused requests made records: %v", jobs)
	}
	if len(f.cg.events) != 0 {
		t.Errorf("refused requests touched cgroups: %v", f.cg.events)
	}
	// roots holds only what every job shares: the root mount point and the
	// empty workspace.
	for d, want := range map[string][]string{"work": nil, "roots": {"empty-work", "mnt"}} {
		var names []string
		ents, _ := os.ReadDir(filepath.Join(f.dir, d))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s has %v after refused requests, want %v", d, names, want)
		}
	}
	if j := f.run("true"); j.GetId() != "1" {
		t.Errorf("first job after refused requests has id %s, want 1", j.GetId())
	}
}

// The cgroup exists before the job's first process, which goes in it; the
// usage is read before the cgroup is removed, and recorded.
func TestCgroupLifecycle(t *testing.T) {
	f := newFixture(t, nil)
	f.cg.setNext(Usage{CPUTime: 1500 * time.Microsecond, MemoryPeakBytes: 4096})
	j := f.run("sh", "-c", "exit 3")
	rec := f.wait(j.GetId())
	if ev := f.cg.eventsOf(j.GetId()); !slices.Equal(ev, []string{"create", "apply", "stats", "running", "destroy"}) {
		t.Errorf("cgroup events %v, want create, apply, stats, running, destroy", ev)
	}
	u := rec.GetUsage()
	if u.GetCpuTimeUsec() != 1500 || u.GetMemoryPeakBytes() != 4096 || u.GetOomKills() != 0 {
		t.Errorf("usage %v", u)
	}
	if rec.GetState() != failed || rec.GetReason() != "exited with code 3" {
		t.Errorf("record %v", rec)
	}
	if got := f.stored(j.GetId()).Job.GetUsage(); got.GetCpuTimeUsec() != 1500 {
		t.Errorf("stored usage %v", got)
	}
}

// A cgroup that cannot be made fails the start with nothing left; a job
// that cannot start has its cgroup removed.
// A job's end is recorded only once nothing of it can run: a process
// left running in its cgroup is killed first, and the record waits for
// that. The cgroup is removed after the record.
func TestEndRecordedOnlyWhenNothingRuns(t *testing.T) {
	f := newFixture(t, nil)
	var mu sync.Mutex
	left := []int{4242} // a process that outlived the job's command
	release := make(chan struct{})
	f.cg.stray = func() ([]int, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(left), nil
	}
	f.cg.killAll = func() {
		<-release // the stray process takes its time to die
		mu.Lock()
		left = nil
		mu.Unlock()
	}
	j := f.run("true")
	for deadline := time.Now().Add(10 * time.Second); !slices.Contains(f.cg.eventsOf(j.GetId()), "killall"); {
		if time.Now().After(deadline) {
			t.Fatalf("no KillAll of the stray process: %v", f.cg.eventsOf(j.GetId()))
		}
		time.Sleep(time.Millisecond)
	}
	rec, err := f.reg.Wait(context.Background(), j.GetId(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Errorf("recorded %v while a process of the job was still being killed", rec.GetState())
	}
	if st := f.stored(j.GetId()).Job.GetState(); st != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Errorf("saved %v while a process of the job was still being killed", st)
	}
	close(release)
	if rec := f.wait(j.GetId()); rec.GetState() != completed {
		t.Errorf("record %v", rec)
	}
	ev := f.cg.eventsOf(j.GetId())
	if want := []string{"create", "apply", "stats", "running", "killall", "destroy"}; !slices.Equal(ev, want) {
		t.Errorf("cgroup events %v, want %v", ev, want)
	}

	// Without a stray process, no kill: the record follows the check.
	f.cg.stray, f.cg.killAll = nil, nil
	j = f.run("true")
	f.wait(j.GetId())
	if ev := f.cg.eventsOf(j.GetId()); slices.Contains(ev, "killall") {
		t.Errorf("cgroup events %v: KillAll for a job with nothing left", ev)
	}
}

func TestCgroupFailures(t *testing.T) {
	f := newFixture(t, nil)
	f.cg.createErr = errdefs.Errorf(errdefs.ErrAlreadyExists, "cgroup of job 1 already exists")
	if _, err := runWith(t, f, nil, "true"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("err %v", err)
	}
	rec := f.wait("1")
	if rec.GetState() != failed || !strings.Contains(rec.GetReason(), "already exists") {
		t.Errorf("record %v", rec)
	}
	f.assertNoDirs("1")

	f.cg.createErr = nil
	if _, err := runWith(t, f, nil, "no-such-command-joblet"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("err %v", err)
	}
	f.wait("2")
	if ev := f.cg.eventsOf("2"); !slices.Equal(ev, []string{"create", "destroy"}) {
		t.Errorf("cgroup events of a job that did not start: %v, want create, destroy", ev)
	}
	f.assertNoDirs("2")
}

func TestOOM(t *testing.T) {
	f := newFixture(t, nil)
	mem := &jobletv1.Limits{MaxMemoryMb: 64}
	for _, tc := range []struct {
		name   string
		script string
		limits *jobletv1.Limits
		state  jobletv1.JobState
		reason string
	}{
		// The kernel's SIGKILL took the command itself.
		{"command killed", "kill -KILL $$", mem, failed,
			"out of memory: killed by the kernel (limit 64 MB)"},
		// cgroup v1: a child was killed, the command went on.
		{"child killed", "exit 137", mem, failed,
			"exited with code 137; out of memory: the kernel killed 2 processes of the job (limit 64 MB)"},
		{"survived", "exit 0", nil, completed,
			"out of memory: the kernel killed 2 processes of the job (no memory limit)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kills := uint64(1)
			if tc.name != "command killed" {
				kills = 2
			}
			f.cg.setNext(Usage{OOMKills: kills})
			j, err := runWith(t, f, tc.limits, "sh", "-c", tc.script)
			if err != nil {
				t.Fatal(err)
			}
			rec := f.wait(j.GetId())
			if rec.GetState() != tc.state || rec.GetReason() != tc.reason || rec.GetUsage().GetOomKills() != int64(kills) {
				t.Errorf("record %v\nwant state %v, reason %q", rec, tc.state, tc.reason)
			}
		})
	}
	// A stop is a stop, even with an OOM kill on the way.
	f.cg.setNext(Usage{OOMKills: 1})
	j := f.run("sleep", "1000")
	rec, err := f.reg.Stop(context.Background(), j.GetId())
	if err != nil {
		t.Fatal(err)
	}
	want := ReasonStopped + "; out of memory: the kernel killed 1 process of the job (no memory limit)"
	if rec.GetState() != stopped || rec.GetReason() != want {
		t.Errorf("stopped record %v, want reason %q", rec, want)
	}
}

// Stop signals the whole cgroup, and kills it after the grace period.
func TestStopThroughTheCgroup(t *testing.T) {
	f := newFixture(t, nil)
	j := f.run("sh", "-c", `trap "" TERM; echo ready; sleep 1000`)
	waitLog(t, f.logd, j.GetId(), "ready\n")
	rec, err := f.reg.Stop(context.Background(), j.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetState() != stopped {
		t.Errorf("record %v", rec)
	}
	f.awaitRetired(j.GetId()) // the cgroup is removed after the record
	ev := f.cg.eventsOf(j.GetId())
	want := []string{"create", "apply", "signal terminated", "killall", "stats", "running", "destroy"}
	if !slices.Equal(ev, want) {
		t.Errorf("cgroup events %v, want %v", ev, want)
	}

	// A job that ends on SIGTERM is never SIGKILLed.
	j = f.run("sleep", "1000")
	if _, err := f.reg.Stop(context.Background(), j.GetId()); err != nil {
		t.Fatal(err)
	}
	f.awaitRetired(j.GetId())
	if ev := f.cg.eventsOf(j.GetId()); slices.Contains(ev, "killall") {
		t.Errorf("cgroup events %v: KillAll for a job that ended on SIGTERM", ev)
	}
}

// measuredRunner is execRunner whose jobs come back with the usage their
// supervisor measured, as the shim's do.
type measuredRunner struct{ u Usage }

type measuredProc struct {
	Proc
	u Usage
}

func (r measuredRunner) Start(s Spec) (Proc, error) {
	p, err := execRunner{}.Start(s)
	if err != nil {
		return nil, err
	}
	return measuredProc{p, r.u}, nil
}

func (p measuredProc) Wait() (Result, error) {
	res, err := p.Proc.Wait()
	res.Usage = &p.u
	return res, err
}

// The usage a job's shim measured is the job's, even when the cgroup has
// nothing left to tell (a systemd scope is gone with its last process).
func TestMeasuredUsageWins(t *testing.T) {
	measured := Usage{CPUTime: 1500 * time.Millisecond, MemoryPeakBytes: 64 << 20, OOMKills: 1}
	f := newFixture(t, func(o *Options) { o.Runner = measuredRunner{measured} })
	f.cg.setNext(Usage{}) // what an empty or removed cgroup reads as
	j, err := runWith(t, f, &jobletv1.Limits{MaxMemoryMb: 64}, "sh", "-c", "kill -KILL $$")
	if err != nil {
		t.Fatal(err)
	}
	rec := f.wait(j.GetId())
	if rec.GetState() != failed || rec.GetReason() != "out of memory: killed by the kernel (limit 64 MB)" ||
		rec.GetUsage().GetCpuTimeUsec() != 1500000 || rec.GetUsage().GetMemoryPeakBytes() != 64<<20 {
		t.Errorf("record %v, want the measured usage and an OOM failure", rec)
	}
}
