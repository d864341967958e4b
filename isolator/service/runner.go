package service

import (
	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/shim"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// sandboxRunner runs jobs in the real sandbox.
type sandboxRunner struct{}

func (sandboxRunner) Start(s jobs.Spec) (jobs.Proc, error) {
	p, err := sandbox.Start(sandbox.Spec{
		ID:       s.ID,
		Hostname: s.Hostname,
		Args:     s.Args,
		Env:      s.Env,
		RootDir:  s.RootDir,
		WorkDir:  s.WorkDir,
		Stdout:   s.Stdout,
		Stderr:   s.Stderr,
		Cgroup:   s.Cgroup,
		// The namespace netd prepared for the job, and its /etc files.
		NetnsPath:  s.NetnsPath,
		ResolvConf: s.ResolvConf,
		Hosts:      s.Hosts,
		Work:       sandbox.Storage(s.Work),
		Tmp:        sandbox.Storage(s.Tmp),
		UserNS:     (*sandbox.UserNS)(s.UserNS),
	})
	if err != nil {
		return nil, err
	}
	return sandboxProc{p}, nil
}

// sandboxProc is a sandbox.Process seen as a jobs.Proc.
type sandboxProc struct{ *sandbox.Process }

func (p sandboxProc) Wait() (jobs.Result, error) {
	r, err := p.Process.Wait()
	return jobs.Result{ExitCode: r.ExitCode, Signal: r.Signal}, err
}

// cgroups is the cgroup package's Parent seen as jobs.Cgroups. With pool
// set (the shim runner's, on cgroup v1, see useSpares), a job's cgroup is
// the spare cgroup of the waiting shim its start is given: Create takes
// that shim from the pool and the job's cgroup carries it to the runner's
// Start.
type cgroups struct {
	*cgroup.Parent
	pool *shim.Pool
}

// spareMinMemoryMB is the smallest memory limit of a job whose cgroup is
// made from a spare. An init born in the job's cgroup has its own start
// (the exec and Go runtime start of joblet-sandbox-init, until its gate)
// charged to the job, as on cgroup v2; an init moved in at its gate had it
// charged to its shim. Measured on cgroup v1 (shim tests, `true`): a
// peak of ~5 MB born inside against ~2.6 MB moved in, so a 4 MB job's
// init is OOM-killed born inside. Below this limit a job keeps the
// migration and never fails for the spare.
const spareMinMemoryMB = 16

func (c cgroups) Create(id string, l *jobletv1.Limits, workDir string) (jobs.Cgroup, error) {
	var w *shim.Idle
	if c.pool != nil && (l.GetMaxMemoryMb() == 0 || l.GetMaxMemoryMb() >= spareMinMemoryMB) {
		w = c.pool.Take()
	}
	if w != nil {
		if sp, ok := w.Spare().(spare); ok {
			j, err := c.Parent.CreateFromSpare(id, l, workDir, sp.Spare)
			if err == nil {
				return jobCgroup{Job: j, shim: w}, nil
			}
			// The spare is as it was: with its shim, it goes, and the job
			// gets a cgroup made anew (which reports a fault of the job's
			// own, a bad id or device, alike).
			_ = c.pool.Release(w)
			w = nil
		}
	}
	j, err := c.Parent.Create(id, l, workDir)
	if err != nil {
		if w != nil {
			_ = c.pool.Release(w)
		}
		return nil, err
	}
	return jobCgroup{Job: j, shim: w}, nil
}

// spares makes the pool's spare cgroups.
type spares struct{ *cgroup.Parent }

func (s spares) NewSpare() (shim.Spare, error) {
	sp, err := s.Parent.NewSpare()
	if err != nil {
		return nil, err
	}
	return spare{sp}, nil
}

// spare is a cgroup.Spare seen as a shim.Spare.
type spare struct{ *cgroup.Spare }

// jobCgroup is a cgroup.Job seen as a jobs.Cgroup. shim, when set, is the
// waiting shim Create took for the job (whose spare the cgroup may be):
// the shim runner starts the job under it.
type jobCgroup struct {
	*cgroup.Job
	shim *shim.Idle
}

func (j jobCgroup) Stats() (jobs.Usage, error) {
	u, err := j.Job.Stats()
	return jobs.Usage{CPUTime: u.CPUTime, MemoryPeakBytes: u.MemoryPeakBytes, OOMKills: u.OOMKills}, err
}
