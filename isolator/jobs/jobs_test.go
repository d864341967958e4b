package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/limits"
	"github.com/joblet-dev/joblet/isolator/output"
	"github.com/joblet-dev/joblet/isolator/store"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

const (
	running   = jobletv1.JobState_JOB_STATE_RUNNING
	completed = jobletv1.JobState_JOB_STATE_COMPLETED
	failed    = jobletv1.JobState_JOB_STATE_FAILED
	stopped   = jobletv1.JobState_JOB_STATE_STOPPED
)

type fixture struct {
	t    *testing.T
	dir  string
	logd *memLogd
	cg   *fakeCgroups
	reg  *Registry
	opts Options
}

// testHost is the machine the fixture's limits are checked against.
var testHost = limits.Host{OnlineCPUs: []int{0, 1, 2, 3}, MemoryMB: 8192}

func newFixture(t *testing.T, change func(*Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), logd: newMemLogd(), cg: newFakeCgroups()}
	f.opts = Options{
		StateDir:      f.dir,
		Runner:        execRunner{},
		Cgroups:       f.cg,
		Host:          testHost,
		Logd:          f.logd,
		StopGrace:     300 * time.Millisecond,
		OutputTimeout: 5 * time.Second,
		Output:        output.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		Log:           zerolog.New(zerolog.NewTestWriter(t)),
	}
	if change != nil {
		change(&f.opts)
	}
	f.open()
	return f
}

// open (re)opens the registry over the fixture's state directory and makes
// sure it is shut down when the test ends.
func (f *fixture) open() {
	f.t.Helper()
	reg, err := Open(f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.reg = reg
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.Shutdown(ctx); err != nil {
			f.t.Error(err)
		}
	})
}

func (f *fixture) run(cmd string, args ...string) *jobletv1.Job {
	f.t.Helper()
	j, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: cmd, Args: args})
	if err != nil {
		f.t.Fatalf("run %s: %v", cmd, err)
	}
	if j.GetState() != running || j.GetStartTime() == nil || j.GetHostname() != "job-"+j.GetId() {
		f.t.Fatalf("started job: %v", j)
	}
	return j
}

// wait waits until job id has ended and its final record is saved, and
// returns the record.
func (f *fixture) wait(id string) *jobletv1.Job {
	f.t.Helper()
	f.reg.mu.Lock()
	j, ok := f.reg.jobs[id]
	_, retired := f.reg.ended[id]
	f.reg.mu.Unlock()
	switch {
	case ok:
		select {
		case <-j.done:
		case <-time.After(10 * time.Second):
			f.t.Fatalf("job %s did not end", id)
		}
		f.awaitRetired(id)
	case !retired:
		f.t.Fatalf("no job %s", id)
	}
	rec, err := f.reg.Get(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// awaitRetired waits until ended job id is retired: its teardown after
// the final record (cgroup removal, shim release) is done.
func (f *fixture) awaitRetired(id string) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.reg.mu.Lock()
		_, retired := f.reg.ended[id]
		f.reg.mu.Unlock()
		if retired {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("job %s ended but was not torn down", id)
		}
		time.Sleep(time.Millisecond)
	}
}

// stored returns what is on disk for job id.
func (f *fixture) stored(id string) store.Record {
	f.t.Helper()
	recs, err := store.Read(f.dir)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, r := range recs {
		if r.Job.GetId() == id {
			return r
		}
	}
	f.t.Fatalf("no record for job %s on disk", id)
	return store.Record{}
}

func (f *fixture) assertNoDirs(id string) {
	f.t.Helper()
	for _, d := range []string{filepath.Join(f.dir, "work", id), filepath.Join(f.dir, "roots", id)} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			f.t.Errorf("%s left behind (%v)", d, err)
		}
	}
}

func TestCompletedJob(t *testing.T) {
	f := newFixture(t, nil)
	j := f.wait(f.run("sh", "-c", "echo hi; echo oops >&2; pwd").GetId())
	if j.GetState() != completed || j.GetExitCode() != 0 || j.GetEndTime() == nil || j.GetReason() != "" {
		t.Fatalf("record %v", j)
	}
	all, closed := f.logd.log(j.GetId())
	out := f.logd.stdoutOf(j.GetId())
	wantOut := "hi\n" + filepath.Join(f.dir, "work", j.GetId()) + "\n"
	if out != wantOut || len(all) != len(wantOut)+len("oops\n") || !closed {
		t.Fatalf("log %q, stdout %q, closed %v; want stdout %q and stderr oops", all, out, closed, wantOut)
	}
	if d := f.stored(j.GetId()); d.Job.GetState() != completed || d.Init.PID != 0 {
		t.Fatalf("on disk: %v %+v", d.Job, d.Init)
	}
	f.assertNoDirs(j.GetId())
}

func TestCleanEnvironment(t *testing.T) {
	t.Setenv("JOBLET_SECRET", "leak")
	f := newFixture(t, nil)
	j := f.wait(f.run("/usr/bin/env").GetId())
	out, _ := f.logd.log(j.GetId())
	want := strings.Join(jobEnv(j.GetId(), j.GetHostname()), "\n") + "\n"
	if out != want {
		t.Fatalf("env:\n%s\nwant:\n%s", out, want)
	}
}

func TestFailedJobs(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		script       string
		exit, signal int32
		reason       string
	}{
		{"exit 3", 3, 0, "exited with code 3"},
		{"kill -KILL $$", 137, 9, "killed by SIGKILL"},
	} {
		j := f.wait(f.run("sh", "-c", tc.script).GetId())
		if j.GetState() != failed || j.GetExitCode() != tc.exit || j.GetSignal() != tc.signal || j.GetReason() != tc.reason {
			t.Errorf("%s: got %v", tc.script, j)
		}
	}
}

func TestStartError(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "no-such-command-joblet"})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "job 1") {
		t.Fatalf("err %v, want not found naming the job", err)
	}
	j, err := f.reg.Get(context.Background(), "1")
	if err != nil {
		t.Fatal(err)
	}
	if j.GetState() != failed || j.GetExitCode() != 127 || !strings.Contains(j.GetReason(), "not found") {
		t.Fatalf("record %v", j)
	}
	if d := f.stored("1"); d.Job.GetState() != failed {
		t.Fatalf("on disk: %v", d.Job)
	}
	f.assertNoDirs("1")
	// The job's log is closed, so a follower sees its end.
	deadline := time.Now().Add(5 * time.Second)
	for _, closed := f.logd.log("1"); !closed; _, closed = f.logd.log("1") {
		if time.Now().After(deadline) {
			t.Fatal("log of a job that failed to start not closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInvalidSpecs(t *testing.T) {
	f := newFixture(t, nil)
	long := strings.Repeat("x", MaxCommandBytes)
	for name, spec := range map[string]*jobletv1.JobSpec{
		"nil":           nil,
		"no command":    {},
		"nul command":   {Command: "a\x00b"},
		"nul arg":       {Command: "echo", Args: []string{"ok", "x\x00"}},
		"too many args": {Command: "echo", Args: make([]string, MaxArgs+1)},
		"too long":      {Command: "echo", Args: []string{long}},
		"network":       {Command: "echo", Network: "bridge"},
		"schedule":      {Command: "echo", Schedule: "5 minutes"},
		"negative cpu":  {Command: "echo", Limits: &jobletv1.Limits{MaxCpuPercent: -1}},
		"negative io":   {Command: "echo", Limits: &jobletv1.Limits{MaxIoBps: -1}},
		"bad cores":     {Command: "echo", Limits: &jobletv1.Limits{CpuCores: "0;rm"}},
		"bad name":      {Command: "echo", Name: "a\nb"},
	} {
		if _, err := f.reg.Run(context.Background(), spec); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want invalid argument", name, err)
		}
	}
	if jobs, _ := f.reg.List(context.Background()); len(jobs) != 0 {
		t.Fatalf("invalid specs made records: %v", jobs)
	}
	// At the limits, and with limits given, a spec is fine and recorded.
	spec := &jobletv1.JobSpec{Command: "true", Args: make([]string, MaxArgs), Network: "none", Name: "ok",
		Limits: &jobletv1.Limits{MaxCpuPercent: 150, MaxMemoryMb: 64, CpuCores: "0-1,3", MaxPids: 16}}
	j, err := f.reg.Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if j.GetLimits().GetMaxCpuPercent() != 150 || j.GetLimits().GetCpuCores() != "0-1,3" || j.GetName() != "ok" || j.GetNetwork() != "none" {
		t.Fatalf("record %v", j)
	}
	f.wait(j.GetId())
}

// A job that ignores SIGTERM is killed after the grace period; concurrent
// stops all see it STOPPED, and stopping again changes nothing.
func TestStop(t *testing.T) {
	f := newFixture(t, nil)
	j := f.run("sh", "-c", `trap "" TERM; echo ready; sleep 1000`)
	waitLog(t, f.logd, j.GetId(), "ready\n")
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]*jobletv1.Job, 8)
	for i := range results {
		wg.Go(func() {
			r, err := f.reg.Stop(context.Background(), j.GetId())
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	took := time.Since(start)
	if took < f.opts.StopGrace || took > f.opts.StopGrace+2*time.Second {
		t.Errorf("stop took %v with a grace period of %v", took, f.opts.StopGrace)
	}
	for _, r := range results {
		if r.GetState() != stopped || r.GetReason() != ReasonStopped || r.GetSignal() != int32(syscall.SIGKILL) {
			t.Fatalf("stopped record %v", r)
		}
	}
	again, err := f.reg.Stop(context.Background(), j.GetId())
	if err != nil || again.GetEndTime().AsTime() != results[0].GetEndTime().AsTime() {
		t.Fatalf("second stop: %v %v", again, err)
	}
	if d := f.stored(j.GetId()); d.Job.GetState() != stopped {
		t.Fatalf("on disk: %v", d.Job)
	}
	if _, err := f.reg.Stop(context.Background(), "999"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("stop of an unknown job: %v", err)
	}
	if _, err := f.reg.Get(context.Background(), "999"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("get of an unknown job: %v", err)
	}
}

// A job that honours SIGTERM ends at once, well before the grace period.
func TestStopGraceful(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.StopGrace = 10 * time.Second })
	j := f.run("sleep", "1000")
	start := time.Now()
	r, err := f.reg.Stop(context.Background(), j.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState() != stopped || r.GetSignal() != int32(syscall.SIGTERM) || time.Since(start) > 2*time.Second {
		t.Fatalf("record %v after %v", r, time.Since(start))
	}
}

func waitLog(t *testing.T, l *memLogd, id, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for got, _ := l.log(id); got != want; got, _ = l.log(id) {
		if time.Now().After(deadline) {
			t.Fatalf("log %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMaxRunning(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxRunning = 2 })
	a, b := f.run("sleep", "1000"), f.run("sleep", "1000")
	if _, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "true"}); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("third job: %v", err)
	}
	if _, err := f.reg.Stop(context.Background(), a.GetId()); err != nil {
		t.Fatal(err)
	}
	c := f.run("true")
	f.wait(c.GetId())
	if _, err := f.reg.Stop(context.Background(), b.GetId()); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownStopsJobs(t *testing.T) {
	f := newFixture(t, nil)
	j := f.run("sh", "-c", `trap "" TERM; sleep 1000`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.reg.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r, _ := f.reg.Get(ctx, j.GetId())
	if r.GetState() != stopped || r.GetReason() != ReasonShutdown {
		t.Fatalf("record %v", r)
	}
	if d := f.stored(j.GetId()); d.Job.GetState() != stopped {
		t.Fatalf("on disk: %v", d.Job)
	}
	if _, err := f.reg.Run(ctx, &jobletv1.JobSpec{Command: "true"}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("run after shutdown: %v", err)
	}
}

func TestIDsNeverReusedAcrossReopen(t *testing.T) {
	f := newFixture(t, nil)
	f.wait(f.run("true").GetId())
	f.wait(f.run("true").GetId())
	// After a clean shutdown the ids go on where they were.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.reg.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	f.open()
	f.wait(f.run("true").GetId())
	if j, _ := f.reg.Get(ctx, "3"); j.GetState() != completed {
		t.Fatalf("id after a clean reopen: job 3 is %v, want the new job", j)
	}
	// As after a crash (no shutdown): the rest of the ids reserved on
	// disk are skipped, and none is handed out again.
	f.open()
	j := f.run("true")
	if n, _ := strconv.Atoi(j.GetId()); n <= 3 {
		t.Fatalf("id after a crash %s, want past 3", j.GetId())
	}
	jobs, _ := f.reg.List(ctx)
	if len(jobs) != 4 {
		t.Fatalf("reopened registry has %d jobs, want 4", len(jobs))
	}
}

// A record left RUNNING by a dead isolator becomes FAILED; its init, if it
// is still that process, is killed; a pid now used by another process is not.
func TestReloadRunningJob(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	orphan := startSleep(t)
	stranger := startSleep(t)
	orphanID, err := store.Identify(orphan.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	strangerID, _ := store.Identify(stranger.Process.Pid)
	strangerID.StartTicks++ // same pid, another process
	for id, init := range map[string]store.Proc{"1": orphanID, "2": strangerID, "3": {}} {
		if err := st.Save(store.Record{Job: &jobletv1.Job{Id: id, State: running}, Init: init}); err != nil {
			t.Fatal(err)
		}
		// Leftover directories of the dead isolator's jobs are removed.
		if err := os.MkdirAll(filepath.Join(dir, "work", id, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{t: t, dir: dir, logd: newMemLogd(), cg: newFakeCgroups()}
	f.opts = Options{StateDir: dir, Runner: execRunner{}, Cgroups: f.cg, Host: testHost, Logd: f.logd,
		Log: zerolog.New(zerolog.NewTestWriter(t)), Output: output.Options{MinBackoff: time.Millisecond}}
	f.open()

	for _, id := range []string{"1", "2", "3"} {
		j, err := f.reg.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.GetState() != failed || j.GetReason() != ReasonRestarted || j.GetEndTime() == nil {
			t.Errorf("job %s: %v", id, j)
		}
		if d := f.stored(id); d.Job.GetState() != failed {
			t.Errorf("job %s on disk: %v", id, d.Job)
		}
		f.assertNoDirs(id)
		waitClosed(t, f.logd, id)
	}
	if err := orphan.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("orphaned job's init: %v, want killed", err)
	}
	if err := syscall.Kill(stranger.Process.Pid, 0); err != nil {
		t.Fatalf("a process that is not the job's init was hurt: %v", err)
	}
	if j := f.run("true"); j.GetId() != "4" {
		t.Fatalf("next id %s, want 4", j.GetId())
	}
}

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func waitClosed(t *testing.T, l *memLogd, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, closed := l.log(id); !closed; _, closed = l.log(id) {
		if time.Now().After(deadline) {
			t.Fatalf("log of job %s not closed", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// If logd stays down, a job still ends, after a bounded wait, and says its
// output is incomplete.
func TestOutputTimeout(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.OutputTimeout = 200 * time.Millisecond })
	f.logd.setDown(true)
	j := f.wait(f.run("echo", "hi").GetId())
	if j.GetState() != completed || !strings.Contains(j.GetReason(), "output incomplete") {
		t.Fatalf("record %v", j)
	}
}

// Output produced while logd is briefly down still arrives whole.
func TestOutputSurvivesLogdOutage(t *testing.T) {
	f := newFixture(t, nil)
	f.logd.setDown(true)
	j := f.run("seq", "100000")
	time.Sleep(100 * time.Millisecond)
	f.logd.setDown(false)
	j = f.wait(j.GetId())
	out, closed := f.logd.log(j.GetId())
	want, _ := exec.Command("seq", "100000").Output()
	if j.GetState() != completed || j.GetReason() != "" || out != string(want) || !closed {
		t.Fatalf("record %v, %d/%d bytes, closed %v", j, len(out), len(want), closed)
	}
}

func TestConcurrentRunsAndList(t *testing.T) {
	f := newFixture(t, nil)
	const n = 20
	var wg sync.WaitGroup
	ids := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			j, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "echo", Args: []string{fmt.Sprint(i)}})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- j.GetId()
		})
		wg.Go(func() { f.reg.List(context.Background()) })
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		f.wait(id)
	}
	jobs, _ := f.reg.List(context.Background())
	if len(jobs) != n {
		t.Fatalf("%d jobs, want %d", len(jobs), n)
	}
	for i, j := range jobs { // numeric order: 1, 2, ..., 10, 11, ...
		if j.GetId() != fmt.Sprint(i+1) || j.GetState() != completed {
			t.Fatalf("job %d: %v", i, j)
		}
	}
}

// When the record cannot be written nothing runs, and the job's slot is
// given back. The record's write fails with EFBIG: the process may not
// grow a file past its size now (RLIMIT_FSIZE; Go ignores SIGXFSZ), for
// the moment of the Run.
func TestStateWriteFailure(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxRunning = 1 })
	journal, err := os.Stat(filepath.Join(f.dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	var was unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &was); err != nil {
		t.Fatal(err)
	}
	limit := was
	limit.Cur = uint64(journal.Size())
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	_, err = f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "true"})
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &was); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, unix.EFBIG) {
		t.Fatalf("run without a record: %v, want its write's EFBIG", err)
	}
	j := f.wait(f.run("true").GetId())
	if j.GetId() != "2" || j.GetState() != completed {
		t.Fatalf("record %v", j)
	}
}

// TestWait: Wait answers as soon as the final record is saved, with that
// record; before the job ends it answers with the record as it is once
// max has passed; an unknown job is not found.
func TestWait(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	id := f.run("sleep", "30").GetId()
	j, err := f.reg.Wait(ctx, id, 50*time.Millisecond)
	if err != nil || j.GetState() != running {
		t.Fatalf("Wait before the job ends: %v, %v; want the RUNNING record", j, err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		f.reg.mu.Lock()
		p := f.reg.jobs[id].proc
		f.reg.mu.Unlock()
		_ = p.Kill()
	}()
	j, err = f.reg.Wait(ctx, id, time.Minute)
	if err != nil || j.GetEndTime() == nil || j.GetState() == running {
		t.Fatalf("Wait: %v, %v; want the final record", j, err)
	}
	if d := f.stored(id); d.Job.GetEndTime() == nil {
		t.Fatalf("Wait answered before the final record was saved: on disk %v", d.Job)
	}
	if _, err := f.reg.Wait(ctx, "999999", time.Second); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Wait of an unknown job: %v", err)
	}
}

// A job that ends before its init is identified (its shim reports pid 0,
// as a fast job's does) is recorded as usual, without a warning.
func TestJobEndedBeforeItsInitWasIdentified(t *testing.T) {
	logs := &lockedBuffer{}
	f := newFixture(t, func(o *Options) {
		o.Runner = pidlessRunner{}
		o.Log = zerolog.New(logs)
	})
	if j := f.wait(f.run("true").GetId()); j.GetState() != completed || j.GetExitCode() != 0 {
		t.Fatalf("record %v", j)
	}
	if s := logs.String(); strings.Contains(s, `"level":"warn"`) {
		t.Errorf("warnings logged: %s", s)
	}
}

// pidlessRunner starts jobs like execRunner, but its jobs report pid 0.
type pidlessRunner struct{ execRunner }

type pidlessProc struct{ execProc }

func (r pidlessRunner) Start(s Spec) (Proc, error) {
	p, err := r.execRunner.Start(s)
	if err != nil {
		return nil, err
	}
	return pidlessProc{p.(execProc)}, nil
}

func (pidlessProc) Pid() int { return 0 }

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A job's first process starts only once its RUNNING record is in the
// journal (written: an isolator crash cannot lose it; Run returns once it
// is durable), although the record is written while the job's network and
// cgroup are made.
func TestRecordedBeforeTheJobStarts(t *testing.T) {
	const jobs = 8 // the save and the start race: each job is a chance to catch a start that does not wait
	seen := make(chan string, jobs)
	f := newFixture(t, func(o *Options) {
		dir := o.StateDir
		o.Runner = startHook{func(s Spec) {
			recs, err := store.Read(dir)
			if err != nil {
				t.Error(err)
			}
			state := "no record"
			for _, r := range recs {
				if r.Job.GetId() == s.ID {
					state = r.Job.GetState().String()
				}
			}
			seen <- state
		}}
	})
	for range jobs {
		f.wait(f.run("true").GetId())
		if got := <-seen; got != jobletv1.JobState_JOB_STATE_RUNNING.String() {
			t.Fatalf("on disk when the job started: %s, want its RUNNING record", got)
		}
	}
}

// startHook runs jobs like execRunner, calling hook first.
type startHook struct{ hook func(Spec) }

func (h startHook) Start(s Spec) (Proc, error) {
	h.hook(s)
	return execRunner{}.Start(s)
}
