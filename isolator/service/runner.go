package service

import (
	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/isolator/sandbox"
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

// cgroups is the cgroup package's Parent seen as jobs.Cgroups.
type cgroups struct{ *cgroup.Parent }

func (c cgroups) Create(id string, l *jobletv1.Limits, workDir string) (jobs.Cgroup, error) {
	j, err := c.Parent.Create(id, l, workDir)
	if err != nil {
		return nil, err
	}
	return jobCgroup{j}, nil
}

// jobCgroup is a cgroup.Job seen as a jobs.Cgroup.
type jobCgroup struct{ *cgroup.Job }

func (j jobCgroup) Stats() (jobs.Usage, error) {
	u, err := j.Job.Stats()
	return jobs.Usage{CPUTime: u.CPUTime, MemoryPeakBytes: u.MemoryPeakBytes, OOMKills: u.OOMKills}, err
}
