package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/joblet-dev/joblet/isolator/store"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/schedulerapi"
	schedspec "github.com/joblet-dev/joblet/scheduler/spec"
)

const (
	scheduled = jobletv1.JobState_JOB_STATE_SCHEDULED
	canceled  = jobletv1.JobState_JOB_STATE_CANCELED
)

// memScheduler is the scheduler's side of the API: it reads the input
// with the real parser and keeps the queue in memory; fail, when set, is
// returned by Schedule.
type memScheduler struct {
	mu       sync.Mutex
	queued   map[string]schedulerapi.Entry
	canceled []string
	fail     error
}

func newMemScheduler() *memScheduler {
	return &memScheduler{queued: map[string]schedulerapi.Entry{}}
}

func (s *memScheduler) Schedule(_ context.Context, id, input string) (schedulerapi.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return schedulerapi.Entry{}, s.fail
	}
	due, err := schedspec.Parse(input, time.Now(), time.Local, 0)
	if err != nil {
		return schedulerapi.Entry{}, err
	}
	e := schedulerapi.Entry{JobID: id, Input: input, Due: due, Seq: uint64(len(s.queued) + 1)}
	s.queued[id] = e
	return e, nil
}

func (s *memScheduler) Cancel(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.queued[id]
	delete(s.queued, id)
	s.canceled = append(s.canceled, id)
	return ok, nil
}

func (s *memScheduler) List(context.Context) ([]schedulerapi.Entry, error) {
	return nil, errors.ErrUnsupported
}

func (s *memScheduler) entry(id string) (schedulerapi.Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.queued[id]
	return e, ok
}

func newSchedFixture(t *testing.T, change func(*Options)) (*fixture, *memScheduler) {
	t.Helper()
	sched := newMemScheduler()
	f := newFixture(t, func(o *Options) {
		o.Scheduler = sched
		if change != nil {
			change(o)
		}
	})
	return f, sched
}

// schedule runs spec with a schedule and checks the SCHEDULED record.
func (f *fixture) schedule(input string, spec *jobletv1.JobSpec) *jobletv1.Job {
	f.t.Helper()
	spec.Schedule = input
	before := time.Now()
	j, err := f.reg.Run(context.Background(), spec)
	if err != nil {
		f.t.Fatalf("schedule %q: %v", input, err)
	}
	if j.GetState() != scheduled || j.GetScheduleInput() != input || j.GetStartTime() != nil ||
		j.GetScheduledTime() == nil || !j.GetScheduledTime().AsTime().After(before) {
		f.t.Fatalf("scheduled job: %v", j)
	}
	return j
}

func TestScheduledJobStartsWhenDue(t *testing.T) {
	f, sched := newSchedFixture(t, nil)
	ctx := context.Background()
	j := f.schedule("1h", &jobletv1.JobSpec{Command: "sh", Args: []string{"-c", "echo $JOB_ID"},
		Limits: &jobletv1.Limits{MaxMemoryMb: 64, CpuCores: "1"}})
	id := j.GetId()
	e, ok := sched.entry(id)
	if !ok || !e.Due.Equal(j.GetScheduledTime().AsTime()) {
		t.Fatalf("the scheduler has %+v, %v; the record says %v", e, ok, j.GetScheduledTime())
	}
	if d := f.stored(id); d.Job.GetState() != scheduled || d.Job.GetScheduledTime() == nil {
		t.Fatalf("on disk: %v", d.Job)
	}
	if ev := f.cg.eventsOf(id); len(ev) != 0 {
		t.Fatalf("a scheduled job got a cgroup before it was due: %v", ev)
	}
	if got, _ := f.reg.Get(ctx, id); got.GetState() != scheduled {
		t.Fatalf("get: %v", got)
	}

	r, err := f.reg.StartScheduled(ctx, id, 30*time.Millisecond)
	if err != nil || r.GetState() != running || r.GetReason() != "" {
		t.Fatalf("StartScheduled = %v, %v", r, err)
	}
	// The hand-off again (the scheduler crashed before it noted the start):
	// a success that starts nothing.
	if r, err := f.reg.StartScheduled(ctx, id, 0); err != nil || r.GetState() == scheduled {
		t.Fatalf("second StartScheduled = %v, %v", r, err)
	}
	end := f.wait(id)
	if end.GetState() != completed || end.GetStartTime() == nil || end.GetScheduleInput() != "1h" ||
		end.GetLimits().GetMaxMemoryMb() != 64 || f.logd.stdoutOf(id) != id+"\n" {
		t.Fatalf("ended record %v, output %q", end, f.logd.stdoutOf(id))
	}
	if r, err := f.reg.StartScheduled(ctx, id, 0); err != nil || r.GetState() != completed {
		t.Fatalf("StartScheduled of an ended job = %v, %v", r, err)
	}
	if ev := f.cg.eventsOf(id); strings.Count(strings.Join(ev, ","), "create") != 1 {
		t.Fatalf("cgroup events %v, want one start", ev)
	}
	if l := f.cg.limits[id]; l.GetMaxMemoryMb() != 64 || l.GetCpuCores() != "1" {
		t.Fatalf("the scheduled job ran with limits %v", l)
	}
	f.assertNoDirs(id)
}

func TestScheduledJobStartedLate(t *testing.T) {
	f, _ := newSchedFixture(t, nil)
	j := f.schedule("30s", &jobletv1.JobSpec{Command: "true"})
	r, err := f.reg.StartScheduled(context.Background(), j.GetId(), 2140*time.Millisecond)
	if err != nil || r.GetReason() != "started 2.1s late" {
		t.Fatalf("StartScheduled = %v, %v", r, err)
	}
	if end := f.wait(j.GetId()); end.GetState() != completed || end.GetReason() != "started 2.1s late" {
		t.Fatalf("ended record %v", end)
	}
}

func TestCancelScheduledJob(t *testing.T) {
	f, sched := newSchedFixture(t, nil)
	ctx := context.Background()
	j := f.schedule("5min", &jobletv1.JobSpec{Command: "echo", Args: []string{"never"}})
	id := j.GetId()
	r, err := f.reg.Stop(ctx, id)
	if err != nil || r.GetState() != canceled || r.GetReason() != ReasonCanceled || r.GetEndTime() == nil || r.GetStartTime() != nil {
		t.Fatalf("stop of a scheduled job = %v, %v", r, err)
	}
	if d := f.stored(id); d.Job.GetState() != canceled {
		t.Fatalf("on disk: %v", d.Job)
	}
	if _, ok := sched.entry(id); ok {
		t.Fatal("the canceled job is still queued")
	}
	// A follower of its log sees its end: an empty, closed log.
	waitClosed(t, f.logd, id)
	if out, _ := f.logd.log(id); out != "" {
		t.Fatalf("a canceled job has output %q", out)
	}
	// The scheduler's hand-off, had Cancel not reached it, starts nothing.
	if _, err := f.reg.StartScheduled(ctx, id, 0); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("StartScheduled of a canceled job: %v", err)
	}
	if again, err := f.reg.Stop(ctx, id); err != nil || again.GetState() != canceled {
		t.Fatalf("second stop: %v %v", again, err)
	}
	if ev := f.cg.eventsOf(id); len(ev) != 0 {
		t.Fatalf("a canceled job got a cgroup: %v", ev)
	}
	f.assertNoDirs(id)
}

// A stop that comes while a scheduled job is starting stops it once it runs.
func TestStopWhileScheduledJobStarts(t *testing.T) {
	f, _ := newSchedFixture(t, nil)
	ctx := context.Background()
	for range 5 {
		j := f.schedule("1h", &jobletv1.JobSpec{Command: "sleep", Args: []string{"1000"}})
		if _, err := f.reg.StartScheduled(ctx, j.GetId(), 0); err != nil {
			t.Fatal(err)
		}
		r, err := f.reg.Stop(ctx, j.GetId())
		if err != nil || r.GetState() != stopped || r.GetReason() != ReasonStopped {
			t.Fatalf("stop while starting = %v, %v", r, err)
		}
	}
}

func TestScheduleRefused(t *testing.T) {
	f, sched := newSchedFixture(t, nil)
	ctx := context.Background()
	for _, input := range []string{"5 minutes", "-5m", "0s", "2024-02-30T10:00:00", "2020-01-01T00:00:00Z", "2y", "1e3h", "366d"} {
		_, err := f.reg.Run(ctx, &jobletv1.JobSpec{Command: "true", Schedule: input})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || strings.Contains(err.Error(), "\n") {
			t.Errorf("schedule %q: %v, want one line of invalid argument", input, err)
		}
	}
	// Bad limits are refused for a scheduled job as for any other.
	if _, err := f.reg.Run(ctx, &jobletv1.JobSpec{Command: "true", Schedule: "1h", Limits: &jobletv1.Limits{CpuCores: "99"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad cores on a scheduled job: %v", err)
	}
	if jobs, _ := f.reg.List(ctx); len(jobs) != 0 {
		t.Fatalf("refused schedules made records: %v", jobs)
	}

	// The scheduler down: a clear error, and the record ends FAILED.
	sched.fail = errdefs.Errorf(errdefs.ErrUnavailable, "dial unix /run/joblet/scheduler.sock: connection refused")
	_, err := f.reg.Run(ctx, &jobletv1.JobSpec{Command: "true", Schedule: "1h"})
	if !errors.Is(err, errdefs.ErrUnavailable) || strings.Contains(err.Error(), "/run") {
		t.Fatalf("scheduler down: %v", err)
	}
	jobs, _ := f.reg.List(ctx)
	if len(jobs) != 1 || jobs[0].GetState() != failed || !strings.Contains(jobs[0].GetReason(), "could not be scheduled") {
		t.Fatalf("records after the scheduler failed: %v", jobs)
	}
	if r, err := f.reg.StartScheduled(ctx, jobs[0].GetId(), 0); err != nil || r.GetState() != failed {
		t.Fatalf("StartScheduled of a job that was never scheduled = %v, %v", r, err)
	}
	if _, err := f.reg.StartScheduled(ctx, "999", 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("StartScheduled of an unknown job: %v", err)
	}

	// No scheduler at all.
	g := newFixture(t, nil)
	if _, err := g.reg.Run(ctx, &jobletv1.JobSpec{Command: "true", Schedule: "1h"}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("no scheduler: %v", err)
	}
}

// Too many jobs running: the hand-off is refused as "not now" and the job
// stays scheduled, to be started when the scheduler tries again.
func TestScheduledJobWaitsForASlot(t *testing.T) {
	f, _ := newSchedFixture(t, func(o *Options) { o.MaxRunning = 1 })
	ctx := context.Background()
	busy := f.run("sleep", "1000")
	j := f.schedule("1h", &jobletv1.JobSpec{Command: "true"})
	if _, err := f.reg.StartScheduled(ctx, j.GetId(), 0); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("StartScheduled at the cap: %v", err)
	}
	if r, _ := f.reg.Get(ctx, j.GetId()); r.GetState() != scheduled {
		t.Fatalf("after a refused start: %v", r)
	}
	if _, err := f.reg.Stop(ctx, busy.GetId()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.StartScheduled(ctx, j.GetId(), 0); err != nil {
		t.Fatal(err)
	}
	if end := f.wait(j.GetId()); end.GetState() != completed {
		t.Fatalf("ended record %v", end)
	}
}

// Scheduled jobs stay scheduled across a shutdown and a restart of the
// isolator; a record the scheduler never accepted ends FAILED.
func TestScheduledJobsSurviveRestart(t *testing.T) {
	f, _ := newSchedFixture(t, nil)
	ctx := context.Background()
	j := f.schedule("1h", &jobletv1.JobSpec{Command: "echo", Args: []string{"later"}})
	if err := f.reg.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// As if the isolator crashed between recording a job and the
	// scheduler's answer.
	st, err := store.Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	lost, err := st.NextID()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(store.Record{Job: &jobletv1.Job{Id: lost, Command: "true", State: scheduled, ScheduleInput: "1h"}}); err != nil {
		t.Fatal(err)
	}

	f.open()
	r, err := f.reg.Get(ctx, j.GetId())
	if err != nil || r.GetState() != scheduled || !r.GetScheduledTime().AsTime().Equal(j.GetScheduledTime().AsTime()) {
		t.Fatalf("after a restart: %v, %v", r, err)
	}
	if r, _ := f.reg.Get(ctx, lost); r.GetState() != failed || r.GetReason() != ReasonNotScheduled {
		t.Fatalf("a record the scheduler never took: %v", r)
	}
	if d := f.stored(lost); d.Job.GetState() != failed {
		t.Fatalf("on disk: %v", d.Job)
	}
	if _, err := f.reg.StartScheduled(ctx, j.GetId(), 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if end := f.wait(j.GetId()); end.GetState() != completed || f.logd.stdoutOf(j.GetId()) != "later\n" || end.GetReason() != "started 3s late" {
		t.Fatalf("ended record %v", end)
	}
}

// A scheduled job whose start a crash of the isolator cut short (its
// RUNNING record saved, nothing of it started: no shim, no init, no
// cgroup) is started by the next isolator: it fell due, and the scheduler
// has handed it off. With a cgroup left, or for a job run through the API,
// it may have run (or its caller was told the run failed): it is ended as
// lost, as before.
func TestScheduledJobCutShortByACrashStartsAgain(t *testing.T) {
	f, _ := newSchedFixture(t, nil)
	ctx := context.Background()
	j := f.schedule("1h", &jobletv1.JobSpec{Command: "echo", Args: []string{"due"}})
	if err := f.reg.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	due := f.stored(j.GetId()).Job
	due.State = jobletv1.JobState_JOB_STATE_RUNNING
	mayHaveRun := proto.Clone(due).(*jobletv1.Job)
	mayHaveRun.Id, err = st.NextID()
	if err != nil {
		t.Fatal(err)
	}
	viaAPI := &jobletv1.Job{Command: "true", State: jobletv1.JobState_JOB_STATE_RUNNING}
	if viaAPI.Id, err = st.NextID(); err != nil {
		t.Fatal(err)
	}
	for _, rec := range []*jobletv1.Job{due, mayHaveRun, viaAPI} {
		if err := st.Save(store.Record{Job: rec}); err != nil {
			t.Fatal(err)
		}
	}
	// What a start cut short leaves: its root mount point.
	if err := os.MkdirAll(filepath.Join(f.dir, "roots", due.GetId()), 0o755); err != nil {
		t.Fatal(err)
	}
	f.cg.left = map[string]bool{mayHaveRun.GetId(): true}

	f.open()
	end := f.wait(due.GetId())
	if end.GetState() != completed || end.GetReason() != ReasonStartedAgain || f.logd.stdoutOf(due.GetId()) != "due\n" {
		t.Fatalf("the job cut short: %v, output %q", end, f.logd.stdoutOf(due.GetId()))
	}
	if d := f.stored(due.GetId()); d.Job.GetState() != completed {
		t.Fatalf("on disk: %v", d.Job)
	}
	for _, id := range []string{mayHaveRun.GetId(), viaAPI.GetId()} {
		if r, _ := f.reg.Get(ctx, id); r.GetState() != failed || r.GetReason() != ReasonRestarted {
			t.Errorf("job %s: %v, want failed: %s", id, r, ReasonRestarted)
		}
	}
	// The scheduler's hand-off may come again: it starts nothing twice.
	if r, err := f.reg.StartScheduled(ctx, due.GetId(), time.Second); err != nil || r.GetState() != completed {
		t.Errorf("a second hand-off: %v, %v", r, err)
	}
}
