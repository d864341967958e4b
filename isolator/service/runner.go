package service

import (
	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/isolator/sandbox"
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
