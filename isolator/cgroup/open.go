package cgroup

import (
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
)

// Open returns the existing cgroup of job id, made by Create in this or an
// earlier run of the daemon: a job that outlived a restart of the isolator
// (under its shim) is stopped, measured and removed through it.
func (p *Parent) Open(id string) (*Job, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("bad job id %q", id)
	}
	return p.b.open(id)
}

// Exists reports whether job id has a cgroup under the parent, in any
// hierarchy.
func (p *Parent) Exists(id string) (bool, error) {
	ids, err := p.b.jobs()
	if err != nil {
		return false, fmt.Errorf("list job cgroups: %w", err)
	}
	return slices.Contains(ids, id), nil
}

// CleanupExcept is Cleanup for every job cgroup but those keep reports
// true for: the jobs still running under their shims across a restart.
func (p *Parent) CleanupExcept(keep func(id string) bool) error {
	ids, err := p.b.jobs()
	if err != nil {
		return fmt.Errorf("list stale job cgroups: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if keep(id) {
			continue
		}
		j, err := p.b.open(id)
		if err == nil {
			err = j.Destroy()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stale cgroup %s: %w", id, err))
			continue
		}
		p.log.Info().Str("job_id", id).Msg("removed stale job cgroup")
	}
	return errors.Join(errs...)
}

// OpenJob opens the cgroup of job id from its directories (Job.Paths, as
// another process of the daemon got them): a job's shim uses it to put
// the job's init in the cgroup the isolator made. On cgroup v2 paths has
// the one key "".
func OpenJob(id string, paths map[string]string) (*Job, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("cgroup of job %s: no paths", id)
	}
	cfg := &cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}
	if dir, ok := paths[""]; ok && len(paths) == 1 {
		m, err := fs2.NewManager(cfg, dir)
		if err != nil {
			return nil, fmt.Errorf("cgroup v2 manager: %w", err)
		}
		return &Job{id: id, m: m, procs: dir, v2dir: dir}, nil
	}
	m, err := fs.NewManager(cfg, paths)
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 manager: %w", err)
	}
	return &Job{id: id, m: m, procs: paths["freezer"]}, nil
}
