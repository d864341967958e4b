package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/joblet-dev/joblet/isolator/output"
	"github.com/joblet-dev/joblet/isolator/store"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logging"
	schedspec "github.com/joblet-dev/joblet/scheduler/spec"
)

// Scheduled jobs. The isolator owns their records; the scheduler owns when
// they start. The life of one:
//
//	Run (spec.Schedule set) ── record SCHEDULED ── Scheduler.Schedule ── due time recorded
//	      │ the scheduler refuses or is down: FAILED, error to the caller
//	      ▼
//	SCHEDULED ── Stop ──▶ CANCELED (saved), then Scheduler.Cancel (best effort)
//	      │
//	      └── StartScheduled (the scheduler, when due) ──▶ RUNNING ── launch, as Run does
//	                                                         │ the isolator dies before
//	                                                         │ the job's cgroup exists
//	                                                         ▼
//	                                   the next isolator launches it (startAgain)
//
// StartScheduled is idempotent by job id, which is what lets the scheduler
// hand a job off again after a crash without it running twice.

// Reasons recorded on scheduled jobs.
const (
	ReasonCanceled     = "canceled before it started"
	ReasonNotScheduled = "isolator restarted before the scheduler accepted the job"
	ReasonStartedAgain = "isolator restarted as the job was starting; started again"
)

// CgroupChecker is an optional part of Options.Cgroups: whether a job has
// a cgroup. Without it, a scheduled job whose start a crash cut short is
// recorded as lost, never started again.
type CgroupChecker interface {
	Exists(id string) (bool, error)
}

// lateNote is how late a scheduled job may start before its record says so.
const lateNote = time.Second

// cancelTimeout bounds the call that takes a canceled job off the
// scheduler's queue.
const cancelTimeout = 5 * time.Second

// schedule records a validated job as SCHEDULED and queues it with the
// scheduler. A schedule that cannot be read is refused before anything is
// recorded. If the scheduler refuses or cannot be reached, the record ends
// FAILED and the error is returned.
func (r *Registry) schedule(ctx context.Context, spec *jobletv1.JobSpec, eff *jobletv1.Limits) (*jobletv1.Job, error) {
	input := spec.GetSchedule()
	// A fast, precise answer that leaves no record behind. The scheduler
	// reads the input again against its own clock, and its instant is the
	// one kept.
	if _, err := schedspec.Parse(input, time.Now(), time.Local, 0); err != nil {
		return nil, err
	}
	if r.opts.Scheduler == nil {
		return nil, errdefs.Errorf(errdefs.ErrUnavailable, "scheduling is not available on this server")
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, errdefs.Errorf(errdefs.ErrUnavailable, "the isolator is shutting down")
	}
	id, err := r.store.NextID()
	if err != nil {
		return nil, r.stateError(err)
	}
	log := r.opts.Log.With().Str(logging.KeyJobID, id).Logger()
	j := &job{
		rec:    newRecord(id, spec, eff, jobletv1.JobState_JOB_STATE_SCHEDULED),
		log:    log,
		exited: make(chan struct{}),
		done:   make(chan struct{}),
	}
	j.rec.ScheduleInput = input
	// The network as asked for: it is attached when the job starts.
	j.rec.Network = spec.GetNetwork()
	// Its uploaded files become its workspace now and stay until it ends
	// or is canceled (upload.go).
	if j.upload = uploadFrom(ctx); j.upload != "" {
		if err := r.placeUpload(j, r.workDir(id)); err != nil {
			return nil, err
		}
	}
	// Recorded before the scheduler hears of it, so that a start that comes
	// at once never meets an unknown id.
	if err := r.store.Save(store.Record{Job: j.rec}); err != nil {
		return nil, r.stateError(err)
	}
	r.mu.Lock()
	r.jobs[id] = j
	r.mu.Unlock()

	e, err := r.opts.Scheduler.Schedule(ctx, id, input)
	r.mu.Lock()
	if err != nil {
		err = schedulerError(log, err)
		if j.rec.GetState() == jobletv1.JobState_JOB_STATE_SCHEDULED {
			r.endLocked(j, jobletv1.JobState_JOB_STATE_FAILED, "could not be scheduled: "+err.Error())
			j.rec.ExitCode = -1
			r.retireLocked(j)
		}
	} else {
		j.rec.ScheduledTime = timestamppb.New(e.Due)
	}
	snap := proto.Clone(j.rec).(*jobletv1.Job)
	r.mu.Unlock()
	if serr := r.store.Save(store.Record{Job: snap}); serr != nil {
		log.Error().Err(serr).Msg("cannot save job record")
	}
	if err != nil {
		log.Warn().Err(err).Msg("job could not be scheduled")
		return nil, err
	}
	log.Info().Str("schedule", input).Time("due", e.Due).Str("command", spec.GetCommand()).Msg("job scheduled")
	return snap, nil
}

// schedulerError is what the caller is told when the scheduler refused a
// job or could not be asked. Refusals carry a message for the user; the
// details of a failed call (socket paths and the like) stay in the log.
func schedulerError(log zerolog.Logger, err error) error {
	for _, kind := range []error{errdefs.ErrInvalidArgument, errdefs.ErrAlreadyExists, errdefs.ErrResourceExhausted} {
		if errors.Is(err, kind) {
			return err
		}
	}
	log.Error().Err(err).Msg("scheduler call failed")
	return errdefs.Errorf(errdefs.ErrUnavailable, "the scheduler is unavailable; try again shortly")
}

// endLocked ends a job that never ran. r.mu is held.
func (r *Registry) endLocked(j *job, state jobletv1.JobState, reason string) {
	j.rec.State, j.rec.Reason, j.rec.EndTime = state, reason, timestamppb.Now()
	close(j.exited)
	close(j.done)
}

// StartScheduled implements isolatorapi.Isolator: it starts a SCHEDULED
// job that has fallen due, delay after its due time. A job already started
// or ended is a success that changes nothing; a canceled one is a failed
// precondition. It returns once the RUNNING record is saved; the job starts
// in the background, exactly as Run starts one (launch), so many jobs due
// at once are not held up behind each other's setup. A job that then fails
// to start ends FAILED with the reason, as with Run.
func (r *Registry) StartScheduled(_ context.Context, id string, delay time.Duration) (*jobletv1.Job, error) {
	r.mu.Lock()
	j, ok := r.jobs[id]
	if !ok {
		rec := r.endedLocked(id)
		r.mu.Unlock()
		switch {
		case rec == nil:
			return nil, notFound(id)
		case rec.GetState() == jobletv1.JobState_JOB_STATE_CANCELED:
			return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "job %s was canceled", id)
		default: // started already, and ended: the hand-off came again
			return rec, nil
		}
	}
	switch j.rec.GetState() {
	case jobletv1.JobState_JOB_STATE_SCHEDULED:
	case jobletv1.JobState_JOB_STATE_CANCELED:
		r.mu.Unlock()
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "job %s was canceled", id)
	default: // started already: the hand-off came again
		snap := proto.Clone(j.rec).(*jobletv1.Job)
		r.mu.Unlock()
		return snap, nil
	}
	switch {
	case r.closed:
		r.mu.Unlock()
		return nil, errdefs.Errorf(errdefs.ErrUnavailable, "the isolator is shutting down")
	case r.opts.MaxRunning > 0 && r.running >= r.opts.MaxRunning:
		r.mu.Unlock()
		return nil, errdefs.Errorf(errdefs.ErrResourceExhausted, "too many jobs running (at most %d)", r.opts.MaxRunning)
	}
	r.running++
	r.wg.Add(1)
	j.rec.State = jobletv1.JobState_JOB_STATE_RUNNING
	if delay > lateNote {
		j.rec.Reason = fmt.Sprintf("started %s late", delay.Round(100*time.Millisecond))
	}
	snap := proto.Clone(j.rec).(*jobletv1.Job)
	r.mu.Unlock()
	// On disk before anything runs, as for Run.
	if err := r.store.Save(store.Record{Job: snap}); err != nil {
		r.mu.Lock()
		j.rec.State, j.rec.Reason = jobletv1.JobState_JOB_STATE_SCHEDULED, ""
		r.running--
		r.mu.Unlock()
		r.wg.Done()
		return nil, r.stateError(err)
	}
	j.log.Info().Dur("delay", delay).Msg("scheduled job due")
	go func() {
		// A start error is recorded on the job (failStart); nobody waits
		// for it here.
		_, _ = r.launch(j, specOf(snap), nil)
	}()
	return snap, nil
}

// specOf is what a recorded job runs: its command, the limits in force and
// its network.
func specOf(rec *jobletv1.Job) *jobletv1.JobSpec {
	return &jobletv1.JobSpec{
		Command: rec.GetCommand(),
		Args:    rec.GetArgs(),
		Limits:  rec.GetLimits(),
		Network: rec.GetNetwork(),
		Name:    rec.GetName(),
	}
}

// cancel ends a SCHEDULED job as CANCELED: saved first, while r.mu keeps
// StartScheduled out, then taken off the scheduler's queue. If that call
// fails, the scheduler's later StartScheduled gets a failed precondition
// and drops the entry. r.mu is held on entry and released.
func (r *Registry) cancel(ctx context.Context, j *job) (*jobletv1.Job, error) {
	id := j.rec.GetId()
	snap := proto.Clone(j.rec).(*jobletv1.Job)
	snap.State, snap.Reason, snap.EndTime = jobletv1.JobState_JOB_STATE_CANCELED, ReasonCanceled, timestamppb.Now()
	if err := r.store.Save(store.Record{Job: snap}); err != nil {
		r.mu.Unlock()
		return nil, r.stateError(err) // still SCHEDULED, on disk and here
	}
	r.endLocked(j, snap.GetState(), snap.GetReason())
	j.rec.EndTime = snap.GetEndTime()
	r.retireLocked(j)
	r.wg.Add(1) // Shutdown waits for the rest
	r.mu.Unlock()
	j.log.Info().Msg("scheduled job canceled")

	defer r.wg.Done()
	if r.opts.Scheduler != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
		defer cancel()
		if _, err := r.opts.Scheduler.Cancel(cctx, id); err != nil {
			j.log.Warn().Err(err).Msg("cannot take the canceled job off the scheduler's queue; it will be dropped when due")
		}
	}
	r.removeDirs(id, j.log)
	// A follower of the job's log (rnx log -f) waits for a log that would
	// otherwise never come: give it an empty, closed one.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.awaitOutput(output.Start(r.opts.Logd, id, nil, nil, r.outputOptions(j.log)))
	}()
	return snap, nil
}

// recoverScheduled takes a SCHEDULED record from disk: the job stays
// scheduled (the scheduler's queue has it), with its workspace kept. A
// record without a due time was never accepted by the scheduler, so nobody
// would ever start it: it ends FAILED.
func (r *Registry) recoverScheduled(rec *jobletv1.Job, log zerolog.Logger) {
	j := &job{rec: rec, log: log, exited: make(chan struct{}), done: make(chan struct{})}
	r.jobs[rec.GetId()] = j
	if rec.GetScheduledTime() != nil {
		log.Info().Time("due", rec.GetScheduledTime().AsTime()).Msg("job still scheduled")
		return
	}
	r.endLocked(j, jobletv1.JobState_JOB_STATE_FAILED, ReasonNotScheduled)
	rec.ExitCode = -1
	r.retire(j)
	r.removeDirs(rec.GetId(), log)
	if err := r.store.Save(store.Record{Job: rec}); err != nil {
		log.Error().Err(err).Msg("cannot save job record")
	}
	log.Warn().Msg(ReasonNotScheduled)
}

// neverStarted reports whether rec, found RUNNING, is a scheduled job that
// the previous isolator had begun to start (the RUNNING record is saved
// before anything else) but had not started: no shim, no init and no start
// time recorded, and no cgroup. The cgroup is made before the shim is given
// the job, and nothing but the job's end removes it, so without one nothing
// of the job ever ran. Nobody else would start such a job: the scheduler
// handed it off already. A job run through the API is not started again:
// its caller was told the call failed, and may run it again itself.
func (r *Registry) neverStarted(rec store.Record, log zerolog.Logger) bool {
	cc, ok := r.opts.Cgroups.(CgroupChecker)
	if !ok || rec.Job.GetScheduledTime() == nil || rec.Job.GetStartTime() != nil || rec.Shim.PID > 0 || rec.Init.PID > 0 {
		return false
	}
	exists, err := cc.Exists(rec.Job.GetId())
	if err != nil {
		log.Error().Err(err).Msg("cannot tell whether the job had started; it is ended as lost")
		return false
	}
	return !exists
}

// startAgain takes in a job for which neverStarted holds, holding a running
// slot, for the caller to launch once every record is in. The job's root
// mount point, and a /work disk image being made, are made afresh; its
// workspace (with its upload) and its network (Attach is idempotent) are
// taken as they are.
func (r *Registry) startAgain(rec *jobletv1.Job, log zerolog.Logger) *job {
	id := rec.GetId()
	for _, p := range []string{filepath.Join(rootsRoot(r.opts.StateDir), id), workImage(r.opts.StateDir, id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Error().Err(err).Str("path", p).Msg("cannot remove what the start cut short left")
		}
	}
	rec.Reason = ReasonStartedAgain
	j := &job{rec: rec, log: log, exited: make(chan struct{}), done: make(chan struct{})}
	r.jobs[id] = j
	r.running++
	r.wg.Add(1)
	log.Warn().Msg(ReasonStartedAgain)
	return j
}
