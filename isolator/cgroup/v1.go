package cgroup

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// v1Controllers are the hierarchies a job joins on cgroup v1: the limits,
// cpuacct for CPU time, and freezer to kill a forking job reliably.
var v1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer"}

// v1 keeps the parent cgroup's directory in each controller's hierarchy.
// Each one is nested under the isolator's own cgroup in that hierarchy, which
// may differ per controller (memory:/process_api/x while cpu:/).
type v1 struct {
	parents map[string]string // controller → <own cgroup>/<name>
}

func newV1(name string) (*v1, error) {
	b := &v1{parents: make(map[string]string)}
	for _, c := range v1Controllers {
		own, err := cgroups.GetOwnCgroupPath(c)
		if err != nil {
			return nil, fmt.Errorf("cgroup v1 controller %s: %w", c, err)
		}
		b.parents[c] = filepath.Join(own, name)
	}
	// Apply(-1) creates the directories without joining; the cpuset
	// controller also copies cpus and mems down from the isolator's
	// cgroup, which v1 requires before any child can be populated.
	m, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, b.paths(""))
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 parent: %w", err)
	}
	if err := m.Apply(-1); err != nil {
		return nil, fmt.Errorf("create cgroup v1 parent: %w", err)
	}
	return b, nil
}

func (b *v1) version() int { return 1 }

// paths is the job's directory in every hierarchy ("" = the parent's).
func (b *v1) paths(id string) map[string]string {
	p := make(map[string]string, len(b.parents))
	for c, dir := range b.parents {
		p[c] = filepath.Join(dir, id)
	}
	return p
}

func (b *v1) create(id string, r *cgroups.Resources) (*Job, error) {
	paths := b.paths(id)
	if _, err := os.Stat(paths["memory"]); err == nil {
		return nil, errdefs.Errorf(errdefs.ErrAlreadyExists, "cgroup of job %s already exists", id)
	}
	// Without swap accounting memsw does not exist and writing it fails;
	// with it, memory+swap = memory means the job cannot swap.
	if r.Memory > 0 && cgroups.PathExists(filepath.Join(b.parents["memory"], "memory.memsw.limit_in_bytes")) {
		r.MemorySwap = r.Memory
	}
	m, err := fs.NewManager(&cgroups.Cgroup{Resources: r}, paths)
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 manager: %w", err)
	}
	j := &Job{id: id, m: m, procs: paths["freezer"]}
	if err := m.Apply(-1); err != nil {
		return nil, j.abort(fmt.Errorf("create cgroup: %w", err))
	}
	if err := m.Set(r); err != nil {
		return nil, j.abort(fmt.Errorf("write limits: %w", err))
	}
	return j, nil
}

func (b *v1) open(id string) (*Job, error) {
	paths := b.paths(id)
	m, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, paths)
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 manager: %w", err)
	}
	return &Job{id: id, m: m, procs: paths["freezer"]}, nil
}

// jobs lists the job cgroups under the parent, across all hierarchies, so
// a directory left in only one of them is still found.
func (b *v1) jobs() ([]string, error) {
	seen := make(map[string]bool)
	var ids []string
	for _, dir := range b.parents {
		names, err := subdirs(dir)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				ids = append(ids, n)
			}
		}
	}
	return ids, nil
}

func (b *v1) removeParent() error {
	return cgroups.RemovePaths(b.paths(""))
}
