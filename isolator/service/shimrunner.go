package service

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/shim"
	"github.com/joblet-dev/joblet/isolator/store"
)

// warmShims is how many shims wait, started, for the next jobs (see
// shim.Pool). One takes a shim's Go start off the path of every job that
// starts while no other is starting (the common case, and the latency the
// bench measures); the replacement is ready ~6 ms after a start, and a
// start that finds none waiting starts its own shim as before. Each
// waiting shim costs its RSS (a few MB, mostly the Go runtime's).
const warmShims = 1

// shimRunner runs every job in the real sandbox under a shim of its own
// (the shim package), so that jobs outlive a restart of the isolator.
type shimRunner struct {
	dir           string // the shims' result files: <dir>/<id>.json
	logdSocket    string
	outputTimeout time.Duration
	pool          *shim.Pool
}

// newShimRunner returns a runner whose warm shims start at once; Close
// stops them. What a shim inherits from the isolator (the sealed init
// binary) must be set up before: a waiting shim was started with what was
// there then.
func newShimRunner(dir, logdSocket string, outputTimeout time.Duration) (shimRunner, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return shimRunner{}, fmt.Errorf("create %s: %w", dir, err)
	}
	return shimRunner{dir: dir, logdSocket: logdSocket, outputTimeout: outputTimeout, pool: shim.NewPool(warmShims)}, nil
}

// Close stops the shims waiting for a job (none of them has one) and
// returns once they are reaped, their spare cgroups removed; jobs' shims
// are not touched.
func (r shimRunner) Close() { r.pool.Close() }

// useSpares makes the waiting shims wait in spare cgroups of cg, on cgroup
// v1 (elsewhere the init is born in its cgroup anyway: v2's
// CLONE_INTO_CGROUP), and returns the pool for the jobs' Create to take
// them from (nil: no spares). Spares an earlier isolator left are removed
// first.
func (r shimRunner) useSpares(cg *cgroup.Parent) (*shim.Pool, error) {
	if cg.Version() != 1 {
		return nil, nil
	}
	if err := cg.CleanupSpares(); err != nil {
		return nil, err
	}
	r.pool.UseSpares(spares{cg})
	return r.pool, nil
}

func (r shimRunner) result(id string) string { return filepath.Join(r.dir, id+".json") }

func (r shimRunner) Start(s jobs.Spec) (jobs.Proc, error) {
	spec := shim.Spec{
		ID: s.ID, Hostname: s.Hostname, Args: s.Args, Env: s.Env,
		RootDir: s.RootDir, WorkDir: s.WorkDir,
		NetnsPath: s.NetnsPath, ResolvConf: s.ResolvConf, Hosts: s.Hosts,
		Work: sandbox.Storage(s.Work), Tmp: sandbox.Storage(s.Tmp),
		UserNS:     (*sandbox.UserNS)(s.UserNS),
		LogdSocket: r.logdSocket, Result: r.result(s.ID), OutputTimeout: r.outputTimeout,
	}
	// The waiting shim Create took for the job, when it did (its spare is
	// the job's cgroup): see cgroups.
	var w *shim.Idle
	if jc, ok := s.Cgroup.(jobCgroup); ok {
		w = jc.shim
	}
	if s.Cgroup != nil {
		// The shim's start makes the cgroup around the shim if it must
		// (the systemd driver's scope) and gives the shim its directories.
		p, ok := s.Cgroup.(shim.Placer)
		if !ok {
			if w != nil {
				_ = r.pool.Release(w)
			}
			return nil, errors.New("the job's cgroup cannot be placed for its shim")
		}
		spec.Placer = p
	}
	// A result left by an earlier job of the same id cannot exist (ids are
	// never reused), but a stale file must never be taken for this job's.
	r.Forget(s.ID)
	p, err := r.pool.StartWith(w, spec)
	if err != nil {
		return nil, err
	}
	return shimProc{p}, nil
}

func (r shimRunner) Adopt(id string, sh, init store.Proc) (jobs.Proc, error) {
	p, err := shim.Adopt(sh, init, r.result(id))
	if err != nil {
		return nil, err
	}
	return shimProc{p}, nil
}

func (r shimRunner) Forget(id string) { _ = os.Remove(r.result(id)) }

// shimProc is a shim.Process seen as a jobs.DetachedProc.
type shimProc struct{ *shim.Process }

func (p shimProc) Wait() (jobs.Result, error) {
	r, err := p.Process.Wait()
	switch {
	case errors.Is(err, shim.ErrDetached):
		return jobs.Result{}, jobs.ErrDetached
	case errors.Is(err, shim.ErrNoResult):
		return jobs.Result{}, fmt.Errorf("%w: %w", jobs.ErrShimLost, err)
	}
	res := jobs.Result{ExitCode: r.ExitCode, Signal: r.Signal, OutputIncomplete: err == nil && !r.OutputComplete}
	if u := r.Usage; u != nil {
		res.Usage = &jobs.Usage{CPUTime: u.CPUTime, MemoryPeakBytes: u.MemoryPeakBytes, OOMKills: u.OOMKills}
	}
	return res, err
}

func (c cgroups) Open(id string) (jobs.Cgroup, error) {
	j, err := c.Parent.Open(id)
	if err != nil {
		return nil, err
	}
	return jobCgroup{Job: j}, nil
}
