// Package jobs is the isolator's job registry: it gives each job an id that
// is never reused, resolves its resource limits, gives it a cgroup of its
// own, starts it through a Runner, forwards its output to logd, records
// every change of state (and what the job used) on disk, and stops jobs on
// request or when the isolator shuts down.
//
// The Registry is the one owner of the job records. Records are changed only
// under its mutex, and callers always get copies.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/joblet-dev/joblet/isolator/limits"
	"github.com/joblet-dev/joblet/isolator/output"
	"github.com/joblet-dev/joblet/isolator/store"
	"github.com/joblet-dev/joblet/isolator/workspace"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/proto/netdapi"
	"github.com/joblet-dev/joblet/proto/schedulerapi"
)

// Reasons recorded on jobs the isolator ended itself.
const (
	ReasonRestarted = "isolator restarted while the job was running"
	// ReasonShimLost is the reason of a job whose shim ended without a
	// result: it was gone when a new isolator came to adopt it (the
	// machine rebooted), or it was killed.
	ReasonShimLost = "the host or the isolator's shim stopped while the job ran"
	ReasonShutdown = "isolator shut down"
	ReasonStopped  = "stopped on request"
)

// Options configure a Registry.
type Options struct {
	StateDir string // the isolator's state directory
	Runner   Runner
	// Cgroups gives every job a cgroup with its limits (required).
	Cgroups Cgroups
	// Limits is the daemon's limit policy and Host what the machine offers;
	// every request's limits are resolved against them (limits.Resolve).
	Limits    limits.Defaults
	Host      limits.Host
	Logd      logdapi.Logd
	Netd      netdapi.Netd  // each job's network (network.go); nil: "none" only
	StopGrace time.Duration // SIGTERM to SIGKILL; 10 s when zero
	// MaxRunning caps the jobs running at once; zero means no cap.
	MaxRunning int
	// LeaveRunning makes Shutdown leave the jobs of a DetachedRunner
	// running (a later isolator adopts them) instead of stopping them.
	LeaveRunning bool
	// OutputTimeout bounds how long an ended job waits for the rest of its
	// output to reach logd (30 s when zero).
	OutputTimeout time.Duration
	Output        output.Options
	Log           zerolog.Logger
	// Scheduler times scheduled jobs (see schedule.go); without one, a
	// scheduled job is refused as unavailable.
	Scheduler schedulerapi.Scheduler
	// Uploads bounds the files a job is given (upload.go); zero fields
	// mean the workspace package's defaults.
	Uploads workspace.Limits
	// Workspace caps what a job may write to its /work, Tmp its /tmp
	// (Spec.Work, Spec.Tmp; see start).
	Workspace, Tmp Storage
	// WorkDisks makes the /work of jobs with an IO limit; without it such
	// jobs are refused (unless Workspace sets no cap).
	WorkDisks WorkDisks
	// UserNS, when set, is the host range every job's root and users map
	// to (joblet.userNamespace); nil: a job's root is the host's.
	UserNS *UserNS

	// NetdPatience is how long a job's start waits for netd while it is
	// unavailable (restarting) before the job fails; 10 s when zero.
	NetdPatience time.Duration
}

// Registry owns the jobs. It implements isolatorapi.Isolator.
type Registry struct {
	opts  Options
	store *store.Store

	mu   sync.Mutex
	jobs map[string]*job // jobs not ended yet, and ended ones until retired
	// ended holds the final records of retired jobs (retireLocked), in
	// their wire form.
	ended   map[string][]byte
	running int  // jobs started or starting and not yet ended
	closed  bool // shutting down: no new job starts
	wg      sync.WaitGroup
	// closing is closed when Shutdown begins: a Wait answers then, so a
	// waiting client never holds up the isolator's stop.
	closing chan struct{}
}

type job struct {
	rec  *jobletv1.Job // guarded by Registry.mu
	proc Proc
	log  zerolog.Logger
	// cg is the job's cgroup. cgMu serializes its use by the stopper and
	// the supervisor; cgGone is set once it is destroyed.
	cg     Cgroup
	cgMu   sync.Mutex
	cgGone bool
	// stopReason is set, under Registry.mu, once a stop was asked for; the
	// job then ends STOPPED with this reason.
	stopReason string
	// upload is the directory holding the job's received files until it
	// becomes its workspace (upload.go).
	upload string
	exited chan struct{} // closed when the command has ended
	done   chan struct{} // closed when the job's final record is saved
}

// Open loads the registry from opts.StateDir. Jobs that were running under
// a previous isolator are recorded as FAILED (see ReasonRestarted); any of
// their processes still alive are killed so nothing is left behind.
// Scheduled jobs stay scheduled (see recoverScheduled).
func Open(opts Options) (*Registry, error) {
	if opts.Cgroups == nil {
		return nil, errors.New("jobs: Options.Cgroups is required")
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	if opts.OutputTimeout <= 0 {
		opts.OutputTimeout = 30 * time.Second
	}
	if opts.NetdPatience <= 0 {
		opts.NetdPatience = attachPatience
	}
	// Traversable (not readable) by others: a sandbox that maps its root to
	// an unprivileged uid still reaches its own workspace.
	for _, d := range []string{opts.StateDir, workRoot(opts.StateDir), rootsRoot(opts.StateDir), mountPoint(opts.StateDir)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	// Made anew, so that it is empty whatever was left in it.
	if err := os.RemoveAll(emptyWork(opts.StateDir)); err != nil {
		return nil, fmt.Errorf("remove %s: %w", emptyWork(opts.StateDir), err)
	}
	if err := os.Mkdir(emptyWork(opts.StateDir), 0o555); err != nil {
		return nil, fmt.Errorf("create %s: %w", emptyWork(opts.StateDir), err)
	}
	st, err := store.OpenLogging(opts.StateDir, opts.Log)
	if err != nil {
		return nil, err
	}
	r := &Registry{opts: opts, store: st, jobs: map[string]*job{}, ended: map[string][]byte{}, closing: make(chan struct{})}
	recs, err := st.Load()
	if err != nil {
		return nil, err
	}
	// Records are taken in one at a time, by this goroutine alone; the
	// jobs adopted meanwhile are supervised only once every record is in,
	// so that no supervisor changes the registry while it is being built.
	var adopted, again []*job
	for _, rec := range recs {
		switch j, startAgain := r.recover(rec); {
		case startAgain:
			again = append(again, j)
		case j != nil:
			adopted = append(adopted, j)
		}
	}
	// Before any job is supervised or launched: the sweep reads the
	// registry without its lock.
	if err := r.sweepUploads(); err != nil { // upload.go
		return nil, err
	}
	for _, j := range adopted {
		go r.supervise(j, nil)
	}
	for _, j := range again {
		go func() {
			// A start error is recorded on the job (failStart).
			_, _ = r.launch(j, specOf(j.rec), nil)
		}()
	}
	return r, nil
}

func workRoot(state string) string { return filepath.Join(state, "work") }

// workImage is where the /work disk of an IO-limited job is made, next to
// its workspace; its name goes once the disk is attached (WorkDisks).
func workImage(state, id string) string { return filepath.Join(workRoot(state), id+".img") }
func rootsRoot(state string) string     { return filepath.Join(state, "roots") }

// mountPoint is every job's root mount point. Each job's init mounts its
// capped /work's layers there (its root it stacks on its own "/") in its
// own mount namespace, so one empty directory serves
// them all, and a job's start and end make and remove none: on a
// filesystem without a journal (ext4 in nojournal mode) every inode
// allocation skips the inodes deleted in the last seconds to minutes, so
// directories made and removed per job made each later allocation slower
// (0.5 ms of the isolator's CPU per job at 100 jobs/s, measured).
func mountPoint(state string) string { return filepath.Join(rootsRoot(state), "mnt") }

// emptyWork is the workspace of every job that brings no files and whose
// /work is capped: the read-only lower layer of its /work overlay, which
// keeps everything the job writes in the upper layer, on a tmpfs of its
// own. It is never written to and is made anew, empty, at each start.
func emptyWork(state string) string { return filepath.Join(rootsRoot(state), "empty-work") }

// recover takes a record from disk into the registry. A job that was
// running is adopted when its shim still runs (detached.go): that job is
// returned, for the caller to supervise. A scheduled job the previous
// isolator was starting, but had not started, is returned with startAgain
// set, for the caller to launch (schedule.go). Otherwise a job that was
// running cannot be followed again (its pipes and its parent are gone), so
// it is ended.
func (r *Registry) recover(rec store.Record) (j *job, startAgain bool) {
	id := rec.Job.GetId()
	log := r.opts.Log.With().Str(logging.KeyJobID, id).Logger()
	if rec.Job.GetState() == jobletv1.JobState_JOB_STATE_SCHEDULED {
		r.recoverScheduled(rec.Job, log) // see schedule.go
		return nil, false
	}
	reason := ReasonRestarted
	if rec.Job.GetState() == jobletv1.JobState_JOB_STATE_RUNNING {
		if r.neverStarted(rec, log) { // schedule.go
			return r.startAgain(rec.Job, log), true
		}
		var adopted *job
		if adopted, reason = r.adopt(rec, log); adopted != nil { // detached.go
			return adopted, false
		}
	}
	if dr, ok := r.opts.Runner.(DetachedRunner); ok {
		dr.Forget(id)
	}
	j = &job{rec: rec.Job, log: log, exited: make(chan struct{}), done: make(chan struct{})}
	close(j.exited)
	close(j.done)
	r.jobs[id] = j
	defer r.retire(j)
	if rec.Job.GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		r.removeDirs(id, log)
		return nil, false
	}
	if killed, err := killLeftover(rec.Init); err != nil {
		log.Error().Err(err).Int("pid", rec.Init.PID).Msg("cannot kill a job left by the previous isolator")
	} else if killed {
		log.Warn().Int("pid", rec.Init.PID).Msg("killed a job left running by the previous isolator")
	}
	rec.Job.State = jobletv1.JobState_JOB_STATE_FAILED
	rec.Job.Reason = reason
	rec.Job.ExitCode = -1
	rec.Job.EndTime = timestamppb.Now()
	r.removeDirs(id, log)
	r.detachLater(id, log) // network.go
	if err := r.store.Save(store.Record{Job: rec.Job}); err != nil {
		log.Error().Err(err).Msg("cannot save job record")
	}
	log.Warn().Msg(reason)
	// The job's log in logd was never closed; close it so that followers
	// see its end.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.awaitOutput(output.Start(r.opts.Logd, id, nil, nil, r.outputOptions(log)))
	}()
	return nil, false
}

// killLeftover kills the job whose init is p, if p still runs. The init is
// PID 1 of the job's PID namespace, so killing it kills every process of
// the job. The process is pinned with a pidfd before it is checked, so a
// pid reused in between is never hit.
func killLeftover(p store.Proc) (bool, error) {
	if p.PID <= 0 {
		return false, nil
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	if !p.Alive() {
		return false, nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, fmt.Errorf("pidfd_send_signal: %w", err)
	}
	return true, nil
}

func (r *Registry) outputOptions(log zerolog.Logger) output.Options {
	o := r.opts.Output
	o.Log = log
	return o
}

// Run validates spec and its limits, records a new job and starts it. A
// request that is refused (bad values, limits the host or the policy cannot
// give) leaves nothing behind: no id, record, workspace or cgroup. If the
// job cannot be started, its record stays (FAILED, with the reason) and the
// error is returned.
func (r *Registry) Run(ctx context.Context, spec *jobletv1.JobSpec) (*jobletv1.Job, error) {
	if err := Validate(spec); err != nil {
		return nil, err
	}
	if err := r.checkNetwork(spec); err != nil { // network.go
		return nil, err
	}
	eff, err := limits.Resolve(spec.GetLimits(), r.opts.Limits, r.opts.Host)
	if err != nil {
		return nil, err
	}
	if eff.GetMaxIoBps() > 0 && r.opts.Workspace.MaxBytes > 0 && r.opts.WorkDisks == nil {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "--max-iobps is not available on this server")
	}
	if spec.GetSchedule() != "" {
		return r.schedule(ctx, spec, eff) // see schedule.go
	}
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return nil, errdefs.Errorf(errdefs.ErrUnavailable, "the isolator is shutting down")
	case r.opts.MaxRunning > 0 && r.running >= r.opts.MaxRunning:
		r.mu.Unlock()
		return nil, errdefs.Errorf(errdefs.ErrResourceExhausted, "too many jobs running (at most %d)", r.opts.MaxRunning)
	}
	// The count and the WaitGroup slot pass to the job's supervisor once it
	// runs; taken under the lock that Shutdown sets closed with, so
	// Shutdown either refuses this job or waits for it.
	r.running++
	r.wg.Add(1)
	r.mu.Unlock()

	id, err := r.store.NextID()
	if err != nil {
		r.release()
		return nil, r.stateError(err)
	}
	log := r.opts.Log.With().Str(logging.KeyJobID, id).Logger()
	j := &job{
		rec:    newRecord(id, spec, eff, jobletv1.JobState_JOB_STATE_RUNNING),
		log:    log,
		upload: uploadFrom(ctx), // upload.go
		exited: make(chan struct{}),
		done:   make(chan struct{}),
	}
	// Written to the journal before anything of the job runs: an isolator
	// crash from then on leaves a record that the next isolator adopts or
	// ends, never a job nobody knows about (the write is in the page cache
	// even if the isolator dies before its fdatasync). Made durable before
	// the client is told: a machine crash takes the job with it, and a job
	// whose Run never returned may leave no trace then, but one whose id
	// the client has always does. The write overlaps the making of the
	// job's network and cgroup, and the fdatasync (~0.3-1 ms) the job's
	// start.
	return r.launch(j, spec, r.store.SaveAsync(store.Record{Job: j.rec}))
}

// ReasonUnsaved is the reason of a job stopped because its RUNNING record
// could not be made durable (a failed fdatasync of the journal): the job
// had started, but its client is told that it could not be recorded.
const ReasonUnsaved = "stopped: the isolator could not record the job"

// written waits until rec is in the journal; a nil rec (a record saved
// before) has nothing to wait for.
func written(rec *store.Saving) error {
	if rec == nil {
		return nil
	}
	return rec.Written()
}

// durable waits until rec is on disk, as written.
func durable(rec *store.Saving) error {
	if rec == nil {
		return nil
	}
	return rec.Durable()
}

// newRecord is the first record of job id: what it runs, with the
// effective limits eff, in state.
func newRecord(id string, spec *jobletv1.JobSpec, eff *jobletv1.Limits, state jobletv1.JobState) *jobletv1.Job {
	return &jobletv1.Job{
		Id:         id,
		Command:    spec.GetCommand(),
		Args:       slices.Clone(spec.GetArgs()),
		State:      state,
		CreateTime: timestamppb.Now(),
		Limits:     eff, // what the job runs with, defaults filled in
		Network:    "none",
		Name:       spec.GetName(),
		Hostname:   "job-" + id,
	}
}

// launch starts a job whose RUNNING record is saved, or being saved (rec,
// nil when it is on disk; the job starts once it is written, and launch
// returns once it is durable), and that holds a running slot (Registry.running and a WaitGroup slot), and hands it to its
// supervisor. It is the one start path of immediate and scheduled jobs. A
// scheduled job is in r.jobs while it starts: a stop asked for meanwhile
// is carried out once it runs (see requestStop).
func (r *Registry) launch(j *job, spec *jobletv1.JobSpec, rec *store.Saving) (*jobletv1.Job, error) {
	id, log := j.rec.GetId(), j.log
	proc, cg, fw, err := r.start(j, spec, rec)
	if err != nil {
		// After the RUNNING record, so that the FAILED one comes last.
		if serr := durable(rec); serr != nil {
			return r.refuseUnsaved(j, serr)
		}
		return r.failStart(j, err)
	}
	// A job may end before its init is identified (Pid is 0 then): its
	// end is on its way, and a restart finds its shim's result.
	var init store.Proc
	if pid := proc.Pid(); pid > 0 {
		if init, err = store.Identify(pid); err != nil {
			log.Warn().Err(err).Msg("cannot identify the job's init; a restart will not find it")
		}
	}
	r.mu.Lock()
	j.proc, j.cg = proc, cg
	j.rec.StartTime = timestamppb.Now()
	r.jobs[id] = j
	if r.closed && j.stopReason == "" && !r.leaveRunning(j) { // Shutdown began while the job was starting
		j.stopReason = ReasonShutdown
	}
	if j.stopReason != "" { // a stop asked for while it was starting
		r.wg.Add(1)
		go r.kill(j)
	}
	snap := proto.Clone(j.rec).(*jobletv1.Job)
	r.mu.Unlock()
	// Without waiting for the disk: the processes named here do not
	// survive a machine crash, and the RUNNING record on disk already ends
	// the job as lost after one (store.Update).
	if err := r.store.Update(store.Record{Job: snap, Init: init, Shim: shimOf(proc)}); err != nil {
		log.Error().Err(err).Msg("cannot save job record")
	}
	log.Info().Int("pid", proc.Pid()).Str("command", spec.GetCommand()).Msg("job started")
	go r.supervise(j, fw)
	if err := durable(rec); err != nil {
		// Its record was written, then cut off the journal again: the job
		// runs, but nothing the client could rely on says so. It is
		// stopped, and its supervisor records its end as it can.
		r.mu.Lock()
		r.requestStop(j, ReasonUnsaved)
		r.mu.Unlock()
		return nil, r.stateError(err)
	}
	return snap, nil
}

// start makes the job's directories, pipes and cgroup, starts forwarding
// its output and starts it. On error, the caller removes the directories;
// the cgroup is gone already.
func (r *Registry) start(j *job, spec *jobletv1.JobSpec, rec *store.Saving) (Proc, Cgroup, *output.Forwarder, error) {
	id := j.rec.GetId()
	// First: a network netd refuses (unknown, full, name taken) costs
	// nothing else. On any later error failStart detaches it again.
	att, err := r.attach(j, spec) // network.go
	if err != nil {
		return nil, nil, nil, err
	}
	work, root := emptyWork(r.opts.StateDir), mountPoint(r.opts.StateDir)
	if r.ownWorkspace(j) {
		work = r.workDir(id)
		if err := r.makeWorkspace(j, work); err != nil { // upload.go
			return nil, nil, nil, err
		}
	}
	// Every job's /work has the same cap. A job with an IO limit gets it as
	// a disk of its own, so that its writes reach a device the limit
	// throttles (a tmpfs has none).
	workCap, ioDevice := r.opts.Workspace, work
	if j.rec.GetLimits().GetMaxIoBps() > 0 && workCap.MaxBytes > 0 {
		disk, err := r.opts.WorkDisks.Make(workImage(r.opts.StateDir, id), work, workCap, r.opts.UserNS)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("make the job's /work disk: %w", err)
		}
		// Until the job's init has mounted it (Start returned) or failed.
		defer func() {
			if err := disk.Close(); err != nil {
				j.log.Error().Err(err).Msg("cannot release the job's /work disk")
			}
		}()
		workCap.Disk, ioDevice = disk.Path(), disk.Path()
	}
	outW, errW, fw, err := r.outputPipes(j) // detached.go
	if err != nil {
		return nil, nil, nil, err
	}
	// After the /work disk (an IO limit throttles it), before the job's
	// first process: every limit is in place when the job starts.
	cg, err := gated(startFS, func() (Cgroup, error) { return r.opts.Cgroups.Create(id, j.rec.GetLimits(), ioDevice) })
	var proc Proc
	if err == nil {
		// The RUNNING record in the journal before the job's first
		// process; its fdatasync goes on meanwhile (launch waits for it).
		if err = written(rec); err == nil {
			proc, err = r.opts.Runner.Start(Spec{
				ID:       id,
				Hostname: j.rec.GetHostname(),
				Args:     append([]string{spec.GetCommand()}, spec.GetArgs()...),
				Env:      jobEnv(id, j.rec.GetHostname()),
				RootDir:  root,
				WorkDir:  work,
				Stdout:   outW,
				Stderr:   errW,
				Cgroup:   cg,
				// The namespace netd prepared, and its resolver and hosts.
				NetnsPath:  att.NetnsPath,
				ResolvConf: att.ResolvConf,
				Hosts:      att.Hosts,
				Work:       workCap,
				Tmp:        r.opts.Tmp,
				UserNS:     r.opts.UserNS,
			})
		}
		if err != nil {
			if derr := cleanupFS.run(cg.Destroy); derr != nil {
				j.log.Error().Err(derr).Msg("cannot remove the cgroup of a job that did not start")
			}
		}
	}
	// The job holds its own copies; ours must go for the readers to see EOF.
	if fw != nil {
		outW.Close()
		errW.Close()
	}
	if err != nil && fw != nil {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.awaitOutput(fw)
		}()
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return proc, cg, fw, nil
}

// jobEnv is a job's whole environment: nothing of the daemon's leaks in.
func jobEnv(id, hostname string) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/work",
		"HOSTNAME=" + hostname,
		"JOB_ID=" + id,
		"LANG=C.UTF-8",
		"TERM=dumb",
	}
}

// failStart records a job that could not start and returns the error.
func (r *Registry) failStart(j *job, err error) (*jobletv1.Job, error) {
	id := j.rec.GetId()
	reason := err.Error()
	if status.Code(errdefs.ToGRPC(err)) == codes.Internal {
		// Not a kind the user can act on: the details (paths and the like)
		// stay in the log.
		reason = "the job could not be started (internal error)"
	}
	exit := -1
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		exit = 127
	case errors.Is(err, errdefs.ErrPermissionDenied):
		exit = 126
	}
	j.log.Warn().Err(err).Msg("job failed to start")
	r.removeDirs(id, j.log)
	r.detachNow(id, j.log) // network.go
	r.mu.Lock()
	j.rec.State = jobletv1.JobState_JOB_STATE_FAILED
	j.rec.Reason = reason
	j.rec.ExitCode = int32(exit)
	j.rec.EndTime = timestamppb.Now()
	close(j.exited)
	close(j.done)
	r.jobs[id] = j
	r.retireLocked(j)
	r.running--
	snap := proto.Clone(j.rec).(*jobletv1.Job)
	r.mu.Unlock()
	if serr := r.store.Save(store.Record{Job: snap}); serr != nil {
		j.log.Error().Err(serr).Msg("cannot save job record")
	}
	r.wg.Done()
	// The caller is told the error and given the record, so a client can
	// say which job failed and exit as a shell would (127, 126).
	return snap, errdefs.WithJob(fmt.Errorf("job %s: %w", id, err), snap)
}

// refuseUnsaved undoes the start of job j, whose RUNNING record could not
// be saved: nothing of it ran, and nothing of it is kept.
func (r *Registry) refuseUnsaved(j *job, err error) (*jobletv1.Job, error) {
	id := j.rec.GetId()
	r.removeDirs(id, j.log)
	r.detachNow(id, j.log) // network.go
	r.release()
	return nil, r.stateError(err)
}

// stateError is what a caller is told when the state cannot be written:
// a full disk is something an operator can act on; other details stay in
// the log.
func (r *Registry) stateError(err error) error {
	r.opts.Log.Error().Err(err).Msg("cannot write the isolator's state")
	return errdefs.NoSpace(err, "state", "recording the job")
}

// release gives back what Run took for a job that never started.
func (r *Registry) release() {
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	r.wg.Done()
}

// commandEnder is a Proc that tells when the job's command has ended,
// before Wait's result is known (a shim waits for logd to complete the
// job's log first): what the job held is released meanwhile.
type commandEnder interface {
	// CommandEnded is closed once the command has ended and nothing of the
	// job runs, or once Wait's result is known.
	CommandEnded() <-chan struct{}
}

// supervise waits for a running job to end, then for its output to reach
// logd, and records how it ended. What the job held (its cgroup's last
// processes, its network, its workspace) is released as soon as its
// command has ended, while its shim waits for logd (commandEnder), so that
// the job's end is recorded once the log is complete, not after both.
func (r *Registry) supervise(j *job, fw *output.Forwarder) {
	defer r.wg.Done()
	early, stop := r.releaseOnCommandEnd(j)
	res, werr := j.proc.Wait()
	close(stop)
	released, ok := <-early
	if errors.Is(werr, ErrDetached) {
		// The isolator is shutting down and leaves the job to its shim.
		// (Had its command ended, what it held is released already: the
		// next isolator releasing it again finds nothing.)
		r.mu.Lock()
		r.running--
		r.mu.Unlock()
		j.log.Info().Msg("left running under its shim")
		return
	}
	// Read before any process left in the cgroup is killed: what the job
	// itself used.
	usage := r.usage(j, res.Usage)
	if !ok {
		released = r.releaseEnded(j)
	}
	detached := released.detached
	if fw == nil && errors.Is(werr, ErrShimLost) {
		// The shim died before closing the job's log: close it, so that
		// followers see the job's end.
		fw = output.Start(r.opts.Logd, j.rec.GetId(), nil, nil, r.outputOptions(j.log))
	}
	outErr := r.awaitOutput(fw)
	if res.OutputIncomplete {
		outErr = errOutputIncomplete // detached.go
	}
	select {
	case <-detached:
	case <-time.After(endDetachWait):
		j.log.Warn().Dur("waited", endDetachWait).Msg("recording the job's end before netd released its network")
	}

	r.mu.Lock()
	rec := j.rec
	rec.EndTime = timestamppb.Now()
	rec.ExitCode, rec.Signal = int32(res.ExitCode), int32(res.Signal)
	rec.Usage = usage.proto()
	// The OOM killer sends SIGKILL; with kills counted in the job's cgroup,
	// a command that died of SIGKILL died of that, not of a stop.
	oomKilled := usage.OOMKills > 0 && res.Signal == int(unix.SIGKILL)
	switch {
	case errors.Is(werr, ErrShimLost):
		rec.State, rec.ExitCode, rec.Reason = jobletv1.JobState_JOB_STATE_FAILED, -1, ReasonShimLost
	case werr != nil:
		rec.State, rec.ExitCode, rec.Reason = jobletv1.JobState_JOB_STATE_FAILED, -1, "lost track of the job's process"
	case j.stopReason != "":
		rec.State, rec.Reason = jobletv1.JobState_JOB_STATE_STOPPED, j.stopReason
	case oomKilled:
		rec.State, rec.Reason = jobletv1.JobState_JOB_STATE_FAILED, oomKilledReason(rec.GetLimits())
	case res.ExitCode == 0:
		rec.State = jobletv1.JobState_JOB_STATE_COMPLETED
	case res.Signal != 0:
		rec.State, rec.Reason = jobletv1.JobState_JOB_STATE_FAILED, "killed by "+unix.SignalName(syscall.Signal(res.Signal))
	default:
		rec.State, rec.Reason = jobletv1.JobState_JOB_STATE_FAILED, "exited with code "+strconv.Itoa(res.ExitCode)
	}
	if usage.OOMKills > 0 && (!oomKilled || j.stopReason != "" || werr != nil) {
		rec.Reason = joinReason(rec.Reason, oomNote(usage.OOMKills, rec.GetLimits()))
	}
	if outErr != nil {
		rec.Reason = joinReason(rec.Reason, "output incomplete: logd did not take all of it")
	}
	r.running--
	snap := proto.Clone(rec).(*jobletv1.Job)
	r.mu.Unlock()

	if err := r.store.Save(store.Record{Job: snap}); err != nil {
		j.log.Error().Err(err).Msg("cannot save job record")
	}
	close(j.done)
	ev := j.log.Info()
	if werr != nil || outErr != nil {
		ev = j.log.Warn().AnErr("wait_error", werr).AnErr("output_error", outErr)
	}
	ev.Stringer("state", snap.GetState()).Int32("exit_code", snap.GetExitCode()).Msg("job ended")
	// After the record, the cgroup: nothing of the job runs
	// (settleCgroup), and its removal waits for the last exiting process
	// (the init's teardown) and for the kernel's cgroup lock (a v1 rmdir
	// behind another cgroup's migration: 5-15 ms). An isolator that dies
	// before it is done leaves the cgroup to the next one's cleanup.
	r.removeCgroup(j)
	r.releaseShim(j) // detached.go
	r.retire(j)
}

// retireLocked replaces an ended job, whose record is final, by that
// record in its wire form: the job's process, cgroup, logger and channels
// are dropped. Each ended job held about 3.7 KiB in 35 objects, so the
// isolator grew with its history (1.5x its rest after 1000 jobs, and
// every record on disk loaded whole at each start); a retired one is an
// id and a few hundred bytes. Whoever still holds the job (a Wait, a
// stop under way) keeps it until done. r.mu is held.
func (r *Registry) retireLocked(j *job) {
	id := j.rec.GetId()
	if r.jobs[id] != j {
		return
	}
	b, err := proto.Marshal(j.rec)
	if err != nil {
		return // kept whole: still served from r.jobs
	}
	r.ended[id] = b
	delete(r.jobs, id)
}

// retire is retireLocked for a caller without r.mu.
func (r *Registry) retire(j *job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retireLocked(j)
}

// endedLocked returns the final record of retired job id, or nil. r.mu is
// held.
func (r *Registry) endedLocked(id string) *jobletv1.Job {
	b, ok := r.ended[id]
	if !ok {
		return nil
	}
	rec := &jobletv1.Job{}
	if err := proto.Unmarshal(b, rec); err != nil {
		// Made by proto.Marshal in retireLocked: cannot happen.
		panic(fmt.Sprintf("job %s: retired record: %v", id, err))
	}
	return rec
}

func joinReason(reason, more string) string {
	if reason == "" {
		return more
	}
	return reason + "; " + more
}

// released is what releaseEnded did for an ended job.
type released struct {
	// detached is closed once the first attempt to release the job's
	// network is over (detachFirst).
	detached <-chan struct{}
}

// releaseOnCommandEnd releases what job j held (releaseEnded) as soon as
// its Proc tells that its command ended (commandEnder), in the
// background, and sends what it did on early; early is closed without a
// value if stop is closed first (Wait returned: supervise releases then)
// or the Proc cannot tell.
func (r *Registry) releaseOnCommandEnd(j *job) (early <-chan released, stop chan struct{}) {
	out := make(chan released, 1)
	stop = make(chan struct{})
	ce, ok := j.proc.(commandEnder)
	if !ok {
		close(out)
		return out, stop
	}
	go func() {
		defer close(out)
		select {
		case <-ce.CommandEnded():
		case <-stop:
			return
		}
		out <- r.releaseEnded(j)
	}()
	return out, stop
}

// releaseEnded makes sure that nothing of job j, whose command ended, runs
// any more, then releases its network (in the background: see
// detachFirst) and removes its workspace. Its root mount point goes after
// its record, its cgroup too.
func (r *Registry) releaseEnded(j *job) released {
	r.settleCgroup(j)
	close(j.exited)
	detached := r.detachFirst(j.rec.GetId(), j.log) // the job's processes are gone; network.go
	r.removeWorkspace(j.rec.GetId(), j.log)
	return released{detached: detached}
}

// usage is what the ended job j used: measured (its shim's measure), or
// else read from its cgroup.
func (r *Registry) usage(j *job, measured *Usage) Usage {
	if measured != nil {
		return *measured
	}
	j.cgMu.Lock()
	defer j.cgMu.Unlock()
	u, err := j.cg.Stats()
	if err != nil {
		j.log.Error().Err(err).Msg("cannot read the job's resource usage")
	}
	return u
}

// settleCgroup makes sure that nothing of the job can run any more before
// its end is recorded: a process left in its cgroup that is not already
// exiting is killed, and waited for.
func (r *Registry) settleCgroup(j *job) {
	j.cgMu.Lock()
	defer j.cgMu.Unlock()
	live, err := j.cg.Running()
	if err == nil && len(live) == 0 {
		return
	}
	if err != nil {
		j.log.Warn().Err(err).Msg("cannot tell whether the job's processes are gone; killing them")
	} else {
		j.log.Warn().Ints("pids", live).Msg("processes of the job outlived it; killing them")
	}
	if err := j.cg.KillAll(); err != nil {
		j.log.Error().Err(err).Msg("cannot kill what is left of the job")
	}
}

// removeCgroup removes the ended job's cgroup (Destroy kills anything
// left in it first, and waits for it).
func (r *Registry) removeCgroup(j *job) {
	j.cgMu.Lock()
	defer j.cgMu.Unlock()
	if err := cleanupFS.run(j.cg.Destroy); err != nil {
		j.log.Error().Err(err).Msg("cannot remove the job's cgroup")
	}
	j.cgGone = true
}

// signalCgroup sends sig to every process of the job's cgroup, unless it
// is gone. KILL uses KillAll, which waits until the cgroup is empty.
func (j *job) signalCgroup(sig syscall.Signal) error {
	j.cgMu.Lock()
	defer j.cgMu.Unlock()
	if j.cgGone {
		return nil
	}
	if sig == unix.SIGKILL {
		return j.cg.KillAll()
	}
	return j.cg.Signal(sig)
}

// awaitOutput waits, for a bounded time, for fw to deliver everything, and
// abandons it otherwise.
func (r *Registry) awaitOutput(fw *output.Forwarder) error {
	if fw == nil { // the job's shim forwards its output
		return nil
	}
	t := time.NewTimer(r.opts.OutputTimeout)
	defer t.Stop()
	select {
	case <-fw.Done():
	case <-t.C:
		fw.Abandon()
	}
	return fw.Err()
}

// removeDirs removes a job's root mount point and workspace.
func (r *Registry) removeDirs(id string, log zerolog.Logger) {
	r.removeRootDir(id, log)
	r.removeWorkspace(id, log)
}

// removeRootDir removes the root mount point of its own that a job got
// from an isolator before session 7's (mountPoint is every job's now). It
// must be empty (the job's mounts live in its own mount namespace), so it
// is removed without recursion: if something were mounted there, nothing
// under it is deleted.
func (r *Registry) removeRootDir(id string, log zerolog.Logger) {
	if err := cleanupFS.run(func() error { return os.Remove(filepath.Join(rootsRoot(r.opts.StateDir), id)) }); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Error().Err(err).Msg("cannot remove the job's root mount point")
	}
}

// removeWorkspace removes a job's workspace (and the image of its /work
// disk, if an isolator died while making it).
func (r *Registry) removeWorkspace(id string, log zerolog.Logger) {
	if err := cleanupFS.run(func() error { return os.RemoveAll(filepath.Join(workRoot(r.opts.StateDir), id)) }); err != nil {
		log.Error().Err(err).Msg("cannot remove the job's workspace")
	}
	// Only an isolator that died while making a /work disk leaves one.
	if err := cleanupFS.run(func() error { return os.Remove(workImage(r.opts.StateDir, id)) }); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Error().Err(err).Msg("cannot remove the job's /work image")
	}
}

// Get returns a job's record.
func (r *Registry) Get(_ context.Context, id string) (*jobletv1.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j, ok := r.jobs[id]; ok {
		return proto.Clone(j.rec).(*jobletv1.Job), nil
	}
	if rec := r.endedLocked(id); rec != nil {
		return rec, nil
	}
	return nil, notFound(id)
}

// Wait returns a job's record once the job has ended (its final record is
// saved), or as it is when max has passed, ctx is done or the registry
// shuts down: a client that waits for a job's end learns it at once
// instead of polling.
func (r *Registry) Wait(ctx context.Context, id string, max time.Duration) (*jobletv1.Job, error) {
	r.mu.Lock()
	j, ok := r.jobs[id]
	r.mu.Unlock()
	if !ok {
		return r.Get(ctx, id) // retired (ended), or unknown
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-j.done:
	case <-t.C:
	case <-ctx.Done():
	case <-r.closing:
	}
	return r.Get(ctx, id)
}

// List returns every job's record in id order.
func (r *Registry) List(context.Context) ([]*jobletv1.Job, error) {
	r.mu.Lock()
	out := make([]*jobletv1.Job, 0, len(r.jobs)+len(r.ended))
	for _, j := range r.jobs {
		out = append(out, proto.Clone(j.rec).(*jobletv1.Job))
	}
	for id := range r.ended {
		out = append(out, r.endedLocked(id))
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *jobletv1.Job) int {
		x, _ := strconv.ParseUint(a.GetId(), 10, 64)
		y, _ := strconv.ParseUint(b.GetId(), 10, 64)
		return cmpUint(x, y)
	})
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func notFound(id string) error {
	return errdefs.Errorf(errdefs.ErrNotFound, "job %q not found", id)
}

// Stop stops a running job (SIGTERM, then SIGKILL after the grace period)
// and returns its record once it has ended. Stopping an ended job returns
// its record unchanged. If ctx ends first, the stop still completes.
func (r *Registry) Stop(ctx context.Context, id string) (*jobletv1.Job, error) {
	r.mu.Lock()
	j, ok := r.jobs[id]
	if !ok {
		rec := r.endedLocked(id)
		r.mu.Unlock()
		if rec == nil {
			return nil, notFound(id)
		}
		return rec, nil
	}
	if j.rec.GetState() == jobletv1.JobState_JOB_STATE_SCHEDULED {
		return r.cancel(ctx, j) // releases r.mu; see schedule.go
	}
	r.requestStop(j, ReasonStopped)
	r.mu.Unlock()
	select {
	case <-j.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.Get(ctx, id)
}

// requestStop starts stopping j once, whoever asks first. r.mu is held.
func (r *Registry) requestStop(j *job, reason string) {
	select {
	case <-j.done:
		return
	default:
	}
	if j.stopReason != "" || j.rec.GetState() == jobletv1.JobState_JOB_STATE_SCHEDULED {
		return // a scheduled job is canceled instead (schedule.go)
	}
	j.stopReason = reason
	if j.proc == nil {
		return // still starting: launch kills it once it runs
	}
	r.wg.Add(1)
	go r.kill(j)
}

func (r *Registry) kill(j *job) {
	defer r.wg.Done()
	j.log.Info().Dur("grace", r.opts.StopGrace).Msg("stopping job")
	// Every process of the cgroup at once, frozen meanwhile so a forking
	// job cannot slip a new one in; the init also forwards it to its PID
	// namespace. The init alone when the cgroup cannot be signalled.
	if err := j.signalCgroup(unix.SIGTERM); err != nil {
		j.log.Warn().Err(err).Msg("SIGTERM to the job's cgroup")
		if err := j.proc.Terminate(); err != nil {
			j.log.Debug().Err(err).Msg("SIGTERM")
		}
	}
	t := time.NewTimer(r.opts.StopGrace)
	defer t.Stop()
	select {
	case <-j.exited:
		return
	case <-t.C:
	}
	j.log.Info().Msg("grace period over: killing job")
	// Every process of the cgroup, frozen so none can fork meanwhile, until
	// it is empty; if that fails, the init, whose death makes the kernel
	// kill its whole PID namespace.
	if err := j.signalCgroup(unix.SIGKILL); err != nil {
		j.log.Warn().Err(err).Msg("SIGKILL to the job's cgroup")
		if err := j.proc.Kill(); err != nil {
			j.log.Warn().Err(err).Msg("SIGKILL")
		}
	}
}

// Shutdown refuses new jobs, stops every running one (recording it STOPPED
// with ReasonShutdown) and waits until all have ended and their records are
// saved, or ctx is done.
func (r *Registry) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if !r.closed {
		close(r.closing)
	}
	r.closed = true
	for _, j := range r.jobs {
		if !r.leaveRunning(j) { // detached.go
			r.requestStop(j, ReasonShutdown)
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		// Every record is written: the next isolator's ids follow on.
		if err := r.store.Close(); err != nil {
			r.opts.Log.Warn().Err(err).Msg("cannot write the job id counter; the next ids skip a few")
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jobs still ending at shutdown: %w", ctx.Err())
	}
}
