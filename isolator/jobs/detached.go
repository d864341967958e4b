package jobs

import (
	"errors"
	"fmt"
	"os"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/joblet-dev/joblet/isolator/output"
	"github.com/joblet-dev/joblet/isolator/store"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// DetachedRunner is a Runner whose jobs run under a supervisor process of
// their own (the shim package) that forwards their output to logd and
// records how they ended, so they outlive the isolator. The registry then
// makes no output pipes (Spec.Stdout and Spec.Stderr are nil), and a new
// isolator adopts the jobs an earlier one left running.
type DetachedRunner interface {
	Runner
	// Adopt finds again the supervisor of job id, recorded as shim, with
	// the job's init: alive, or gone after recording the job's result.
	// Neither is an error, and the job is lost.
	Adopt(id string, shim, init store.Proc) (Proc, error)
	// Forget removes what the supervisor of an ended job may have left.
	Forget(id string)
}

// DetachedProc is a Proc started or adopted by a DetachedRunner.
type DetachedProc interface {
	Proc
	// Shim identifies the supervisor process, for a later Adopt.
	Shim() store.Proc
	// Detach makes Wait return ErrDetached at once: the isolator stops
	// following the job and leaves it running.
	Detach()
	// Release removes the supervisor's result, once the job's end is
	// saved, and returns once the supervisor is gone (Wait may return
	// before it exits).
	Release() error
}

// ErrDetached is what a DetachedProc's Wait returns after Detach.
var ErrDetached = errors.New("detached from the job")

// ErrShimLost is what a DetachedProc's Wait returns when the supervisor
// ended without recording how the job ended (it was killed, or the host
// went down); the job is then ended with ReasonShimLost.
var ErrShimLost = errors.New("the job's supervisor ended without a result")

// CgroupOpener is implemented by Cgroups that can open the cgroup an
// earlier isolator made for a job, to adopt it.
type CgroupOpener interface {
	Open(id string) (Cgroup, error)
}

// RunningIDs lists the jobs that are running (started, or adopted at Open),
// whose cgroups must be kept.
func (r *Registry) RunningIDs() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := map[string]bool{}
	for id, j := range r.jobs {
		if j.rec.GetState() == jobletv1.JobState_JOB_STATE_RUNNING {
			ids[id] = true
		}
	}
	return ids
}

// adopt takes over a RUNNING job an earlier isolator started under a shim:
// its supervisor is followed again (or its recorded result used), and it
// ends as if this isolator had started it. It returns the job, for the
// caller to supervise, or nil and the reason the caller ends it with, as
// lost.
func (r *Registry) adopt(rec store.Record, log zerolog.Logger) (*job, string) {
	dr, ok := r.opts.Runner.(DetachedRunner)
	co, ok2 := r.opts.Cgroups.(CgroupOpener)
	if !ok || !ok2 || rec.Shim.PID <= 0 {
		return nil, ReasonRestarted
	}
	id := rec.Job.GetId()
	proc, err := dr.Adopt(id, rec.Shim, rec.Init)
	if err != nil {
		log.Warn().Err(err).Int("shim_pid", rec.Shim.PID).Msg("cannot adopt the job's shim")
		return nil, ReasonShimLost
	}
	cg, err := co.Open(id)
	if err != nil {
		// The job runs on, but cannot be stopped or measured: stop
		// following it so that it is ended as lost.
		log.Error().Err(err).Msg("cannot open the cgroup of an adopted job")
		if d, ok := proc.(DetachedProc); ok {
			d.Detach()
		}
		return nil, ReasonRestarted
	}
	j := &job{rec: rec.Job, proc: proc, cg: cg, log: log, exited: make(chan struct{}), done: make(chan struct{})}
	if j.rec.GetStartTime() == nil {
		j.rec.StartTime = timestamppb.Now()
	}
	r.jobs[id] = j
	r.running++
	r.wg.Add(1)
	log.Info().Int("shim_pid", rec.Shim.PID).Msg("adopted a job running across an isolator restart")
	return j, ""
}

// leaveRunning reports whether Shutdown leaves j running: it runs under a
// supervisor of its own and the registry is told to leave such jobs.
// r.mu is held.
func (r *Registry) leaveRunning(j *job) bool {
	if !r.opts.LeaveRunning {
		return false
	}
	d, ok := j.proc.(DetachedProc)
	if !ok {
		return false
	}
	d.Detach()
	return true
}

// shimOf is the identity of proc's supervisor, zero for a Proc without one.
func shimOf(proc Proc) store.Proc {
	if d, ok := proc.(DetachedProc); ok {
		return d.Shim()
	}
	return store.Proc{}
}

// errOutputIncomplete is a job's output error when its shim reports that
// logd did not take all of it.
var errOutputIncomplete = errors.New("the job's shim could not deliver all of its output")

// outputPipes makes a job's output pipes and starts forwarding their read
// ends to logd; the forwarder runs even if the start fails, so the job's
// log exists and is closed, and a follower sees its end. A DetachedRunner's
// shim does this itself: then all are nil.
func (r *Registry) outputPipes(j *job) (outW, errW *os.File, fw *output.Forwarder, err error) {
	if _, ok := r.opts.Runner.(DetachedRunner); ok {
		return nil, nil, nil, nil
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, fmt.Errorf("stderr pipe: %w", err)
	}
	fw = output.Start(r.opts.Logd, j.rec.GetId(), outR, errR, r.outputOptions(j.log))
	return outW, errW, fw, nil
}

// releaseShim lets j's supervisor's result go, once the job's end is saved.
func (r *Registry) releaseShim(j *job) {
	if d, ok := j.proc.(DetachedProc); ok {
		if err := d.Release(); err != nil {
			j.log.Warn().Err(err).Msg("cannot release the job's shim (its result, its exit)")
		}
	}
}
