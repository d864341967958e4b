package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// On cgroup v1 a process is put in a cgroup by writing its pid to
// cgroup.procs, and every such write waits for an RCU grace period in the
// kernel once migrations have been idle for a while (7–9 ms here: see
// README.md). A process forked by a thread that is already in a cgroup is
// born there, with no migration. So a spare cgroup is made while the
// isolator is idle, one thread of a waiting shim is moved into it (paying
// the grace period off any job's path), and at a job's start the spare is
// renamed to the job's cgroup and its limits are written: the init that
// thread forks is inside from its first instruction.

// sparePrefix starts every spare's name. No job id can start with it
// (validID), so a spare is never taken for a job's cgroup, nor a job's for
// a spare.
const sparePrefix = "_spare-"

// ErrNoSpares is NewSpare's error where spares are not used: cgroup v2
// (the init is born inside with CLONE_INTO_CGROUP) and the systemd driver.
var ErrNoSpares = errors.New("spare cgroups exist on cgroup v1 only")

// spareSeq numbers the spares of this process.
var spareSeq atomic.Uint64

// Spare is an empty cgroup made ahead of a job in every v1 hierarchy a job
// may join (v1Controllers), for a waiting shim's thread to sit in. Either
// CreateFromSpare makes it a job's cgroup, or Remove removes it.
type Spare struct {
	b    *v1
	name string

	mu   sync.Mutex
	used bool // renamed to a job's cgroup, or removed
}

// NewSpare makes a spare cgroup (cgroup v1 only; ErrNoSpares elsewhere).
// Its name holds the isolator's pid, for whoever looks at cgroupfs.
func (p *Parent) NewSpare() (*Spare, error) {
	b, ok := p.b.(*v1)
	if !ok {
		return nil, ErrNoSpares
	}
	name := fmt.Sprintf("%s%d-%d", sparePrefix, os.Getpid(), spareSeq.Add(1))
	paths := b.paths(name, v1Controllers)
	m, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, paths)
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 manager: %w", err)
	}
	// Apply(-1) makes the directories without joining and copies cpuset's
	// cpus and mems down, which v1 needs before a task may join.
	if err := m.Apply(-1); err != nil {
		return nil, errors.Join(fmt.Errorf("create spare cgroup: %w", err), cgroups.RemovePaths(paths))
	}
	return &Spare{b: b, name: name}, nil
}

// Dirs are the spare's directories, one per hierarchy (two controllers
// mounted together share one): a thread joins the spare by writing its tid
// to the tasks file of each.
func (s *Spare) Dirs() []string {
	var dirs []string
	for _, d := range s.b.paths(s.name, v1Controllers) {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// Remove removes the spare unless it became a job's cgroup. Whatever sat
// in it must be gone (the waiting shim reaped, or its thread ended). It is
// idempotent.
func (s *Spare) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used {
		return nil
	}
	if err := cgroups.RemovePaths(s.b.paths(s.name, v1Controllers)); err != nil {
		return fmt.Errorf("remove spare cgroup %s: %w", s.name, err)
	}
	s.used = true
	return nil
}

// CreateFromSpare is Create, but the job's cgroup is spare renamed to the
// job's name in every hierarchy (rename(2) of a cgroup v1 directory within
// its parent keeps what is in it), with the limits written next. The job
// has a directory in every hierarchy, unlimited where its limits use no
// controller of it. On error the spare is as it was (renamed back), not
// used: the caller stops the spare's shim, then calls Spare.Remove.
func (p *Parent) CreateFromSpare(id string, l *jobletv1.Limits, workDir string, s *Spare) (*Job, error) {
	dev, err := p.checkJob(id, l, workDir)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used {
		return nil, fmt.Errorf("spare cgroup %s is used already", s.name)
	}
	b := s.b
	r := resources(l, dev)
	paths := b.paths(id, v1Controllers)
	if _, err := os.Stat(paths["memory"]); err == nil {
		return nil, errdefs.Errorf(errdefs.ErrAlreadyExists, "cgroup of job %s already exists", id)
	}
	from := b.paths(s.name, v1Controllers)
	var renamed []string
	for _, c := range v1Controllers {
		if slices.Contains(renamed, from[c]) {
			continue // a directory two controllers share
		}
		if err := os.Rename(from[c], paths[c]); err != nil {
			// Back as it was: the spare is still whole, and Remove works.
			var errs []error
			for _, d := range renamed {
				c := controllerOf(from, d)
				if rerr := os.Rename(paths[c], d); rerr != nil {
					errs = append(errs, rerr)
				}
			}
			return nil, errors.Join(append(errs, fmt.Errorf("cgroup of job %s: rename spare: %w", id, err))...)
		}
		renamed = append(renamed, from[c])
	}
	s.used = true
	if r.Memory > 0 && cgroups.PathExists(filepath.Join(b.parents["memory"], "memory.memsw.limit_in_bytes")) {
		r.MemorySwap = r.Memory
	}
	m, err := fs.NewManager(&cgroups.Cgroup{Resources: r}, paths)
	if err == nil {
		err = m.Set(r)
	}
	if err != nil {
		// The spare's thread is still in it, so it cannot be removed yet:
		// the directories go back to the spare's name, which the caller
		// removes once its shim is stopped.
		var errs []error
		for _, d := range renamed {
			if rerr := os.Rename(paths[controllerOf(from, d)], d); rerr != nil {
				errs = append(errs, rerr)
			}
		}
		s.used = false
		return nil, errors.Join(append(errs, fmt.Errorf("cgroup of job %s: write limits: %w", id, err))...)
	}
	j := &Job{id: id, m: m, procs: paths["freezer"]}
	p.log.Debug().Str("job_id", id).Str("spare", s.name).Msg("job cgroup made from a spare")
	return j, nil
}

// controllerOf is a controller whose directory in paths is dir.
func controllerOf(paths map[string]string, dir string) string {
	for c, d := range paths {
		if d == dir {
			return c
		}
	}
	return ""
}

// Holds reports whether process pid is in the job's cgroup in every
// hierarchy the job has (its pid is listed in each cgroup.procs): the
// sandbox checks it before it lets a job's init go that was born from a
// spare's thread, and moves the init in (Apply) where it is not.
func (j *Job) Holds(pid int) (bool, error) {
	if j.m == nil {
		return false, errNotPlaced
	}
	done := make(map[string]bool)
	for _, dir := range j.m.GetPaths() {
		if done[dir] {
			continue
		}
		done[dir] = true
		pids, err := cgroupPids(dir)
		if err != nil {
			return false, fmt.Errorf("processes of job %s: %w", j.id, err)
		}
		if !slices.Contains(pids, pid) {
			return false, nil
		}
	}
	return true, nil
}

// CleanupSpares removes the spare cgroups a previous run of the daemon
// left (its waiting shims exit as soon as that daemon is gone). Call it
// after NewParent, before the first NewSpare. A stale spare that is still
// busy (a shim of the previous run not yet exited) is retried by the
// library's removal; a process is never killed for it: only a waiting
// shim's thread ever sits in a spare.
func (p *Parent) CleanupSpares() error {
	b, ok := p.b.(*v1)
	if !ok {
		return nil
	}
	seen := make(map[string]bool)
	var errs []error
	for _, dir := range b.parents {
		names, err := subdirs(dir)
		if err != nil {
			return fmt.Errorf("list spare cgroups: %w", err)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, sparePrefix) || seen[n] {
				continue
			}
			seen[n] = true
			if err := cgroups.RemovePaths(b.paths(n, v1Controllers)); err != nil {
				errs = append(errs, fmt.Errorf("stale spare cgroup %s: %w", n, err))
				continue
			}
			p.log.Info().Str("spare", n).Msg("removed stale spare cgroup")
		}
	}
	return errors.Join(errs...)
}
