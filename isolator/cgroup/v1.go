package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// v1Controllers are the hierarchies the parent cgroup is made in on cgroup
// v1: every one a job may join.
var v1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer"}

// v1Always are the hierarchies every job joins: memory (limit, peak, OOM
// kills), pids (a pids limit is always set), cpuacct (CPU time) and freezer
// (Signal and KillAll freeze the job; its processes are listed from it).
// cpu, cpuset and blkio are joined only by a job whose limits use them
// (v1Joins): each hierarchy is a directory to make, fill with limits and
// remove per job (Create and Destroy of a default job take half the time
// with four), and a cgroup.procs write at the job's start gate. A job
// that does not join one stays in its shim's cgroup there, which is what
// an unlimited job's own cgroup would give it anyway.
var v1Always = []string{"memory", "pids", "cpuacct", "freezer"}

// v1Joins lists the hierarchies a job with limits r joins: v1Always and
// each controller r writes a limit to. fs.Manager.Set refuses a limit for
// a controller without a path, so a limit can never be silently dropped.
func v1Joins(r *cgroups.Resources) []string {
	cs := slices.Clone(v1Always)
	if r.CpuQuota != 0 || r.CpuPeriod != 0 || r.CpuShares != 0 {
		cs = append(cs, "cpu")
	}
	if r.CpusetCpus != "" || r.CpusetMems != "" {
		cs = append(cs, "cpuset")
	}
	if len(r.BlkioThrottleReadBpsDevice)+len(r.BlkioThrottleWriteBpsDevice) > 0 {
		cs = append(cs, "blkio")
	}
	return cs
}

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
	m, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, b.paths("", v1Controllers))
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 parent: %w", err)
	}
	if err := m.Apply(-1); err != nil {
		return nil, fmt.Errorf("create cgroup v1 parent: %w", err)
	}
	return b, nil
}

func (b *v1) version() int { return 1 }

// paths is the job's directory in each hierarchy of controllers ("" = the
// parent's).
func (b *v1) paths(id string, controllers []string) map[string]string {
	p := make(map[string]string, len(controllers))
	for _, c := range controllers {
		p[c] = filepath.Join(b.parents[c], id)
	}
	return p
}

func (b *v1) create(id string, r *cgroups.Resources) (*Job, error) {
	paths := b.paths(id, v1Joins(r))
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

// open finds the job's directories from what exists, as its limits are not
// known here (an isolator restarted while the job ran): v1Always, and each
// other hierarchy where the job has a directory. A hierarchy the job never
// joined is left out, so Stats and Destroy do not look for it.
func (b *v1) open(id string) (*Job, error) {
	paths := b.paths(id, v1Controllers)
	for c, dir := range paths {
		if !slices.Contains(v1Always, c) && !cgroups.PathExists(dir) {
			delete(paths, c)
		}
	}
	m, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, paths)
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 manager: %w", err)
	}
	return &Job{id: id, m: m, procs: paths["freezer"]}, nil
}

// jobs lists the job cgroups under the parent, across all hierarchies, so
// a directory left in only one of them is still found. Spares (whose names
// no job id can have) are not jobs.
func (b *v1) jobs() ([]string, error) {
	seen := make(map[string]bool)
	var ids []string
	for _, dir := range b.parents {
		names, err := subdirs(dir)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !seen[n] && !strings.HasPrefix(n, sparePrefix) {
				seen[n] = true
				ids = append(ids, n)
			}
		}
	}
	return ids, nil
}

func (b *v1) removeParent() error {
	return cgroups.RemovePaths(b.paths("", v1Controllers))
}
