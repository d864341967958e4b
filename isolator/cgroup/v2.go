package cgroup

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// v2Controllers are enabled for job cgroups on the unified hierarchy.
var v2Controllers = []string{"cpu", "cpuset", "io", "memory", "pids"}

// v2 places jobs at <own>/<name>/<id> on the unified hierarchy.
//
// The "no internal processes" rule forbids enabling controllers for the
// children of a cgroup that has processes of its own (the root excepted).
// The isolator's own cgroup holds the isolator, so when enabling fails with
// EBUSY every process in it moves to the leaf <own>/<name>-daemon first:
// the pattern systemd documents for a service with Delegate=yes. In embedded
// mode the supervisor and its other helpers share that cgroup and move too;
// nothing else changes for them.
type v2 struct {
	own    string // the isolator's cgroup directory at start
	parent string // <own>/<name>
	mkdir  func(string) error
}

func newV2(log zerolog.Logger, own, name string, mkdir func(string) error) (*v2, error) {
	b := &v2{own: own, parent: filepath.Join(own, name), mkdir: mkdir}
	if err := b.enable(own); err != nil {
		if !errors.Is(err, unix.EBUSY) {
			return nil, err
		}
		leaf := filepath.Join(own, name+"-daemon")
		log.Info().Str("from", own).Str("to", leaf).Msg("moving the daemon's processes to a leaf cgroup so job cgroups can have controllers")
		if err := moveProcs(own, leaf, mkdir); err != nil {
			return nil, err
		}
		if err := b.enable(own); err != nil {
			return nil, err
		}
	}
	if err := mkdir(b.parent); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup parent: %w", err)
	}
	if err := b.enable(b.parent); err != nil {
		return nil, err
	}
	return b, nil
}

// enable turns on the job controllers for dir's children, in one write.
func (b *v2) enable(dir string) error {
	avail, err := cgroups.ReadFile(dir, "cgroup.controllers")
	if err != nil {
		return fmt.Errorf("read controllers of %s: %w", dir, err)
	}
	have := strings.Fields(avail)
	var missing []string
	for _, c := range v2Controllers {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cgroup %s lacks controllers %s; delegate them to the isolator's cgroup", dir, strings.Join(missing, ","))
	}
	if err := cgroups.WriteFile(dir, "cgroup.subtree_control", "+"+strings.Join(v2Controllers, " +")); err != nil {
		return fmt.Errorf("enable controllers in %s: %w", dir, err)
	}
	return nil
}

// moveProcs moves every process of from into the leaf to, repeating while
// processes fork in the meantime.
func moveProcs(from, to string, mkdir func(string) error) error {
	if err := mkdir(to); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create daemon leaf cgroup: %w", err)
	}
	for range 10 {
		pids, err := cgroups.GetPids(from)
		if err != nil {
			return fmt.Errorf("list processes of %s: %w", from, err)
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if err := cgroups.WriteCgroupProc(to, pid); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("move pid %d to %s: %w", pid, to, err)
			}
		}
	}
	return fmt.Errorf("processes keep appearing in %s", from)
}

func (b *v2) version() int { return 2 }

func (b *v2) create(id string, r *cgroups.Resources) (*Job, error) {
	dir := filepath.Join(b.parent, id)
	if err := b.mkdir(dir); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, errdefs.Errorf(errdefs.ErrAlreadyExists, "cgroup of job %s already exists", id)
		}
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	unified := make(map[string]string)
	// memory.max and memory.swap.max = 0 come from the library (Memory and
	// MemorySwap equal); an OOM kill takes the whole job (kernel 4.19+).
	if r.Memory > 0 {
		r.MemorySwap = r.Memory
		if cgroups.PathExists(filepath.Join(dir, "memory.oom.group")) {
			unified["memory.oom.group"] = "1"
		}
	}
	// The library writes rbps and wbps as two lines; one line sets both at
	// once, so no moment exists with only one of them in force.
	if len(r.BlkioThrottleReadBpsDevice) > 0 {
		rd, wr := r.BlkioThrottleReadBpsDevice[0], r.BlkioThrottleWriteBpsDevice[0]
		unified["io.max"] = fmt.Sprintf("%d:%d rbps=%d wbps=%d", rd.Major, rd.Minor, rd.Rate, wr.Rate)
		r.BlkioThrottleReadBpsDevice, r.BlkioThrottleWriteBpsDevice = nil, nil
	}
	if len(unified) > 0 {
		r.Unified = maps.Clone(unified)
	}
	j, err := b.open(id)
	if err != nil {
		return nil, errors.Join(err, os.Remove(dir))
	}
	if err := j.m.Set(r); err != nil {
		return nil, j.abort(fmt.Errorf("write limits: %w", err))
	}
	return j, nil
}

func (b *v2) open(id string) (*Job, error) {
	dir := filepath.Join(b.parent, id)
	m, err := fs2.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, dir)
	if err != nil {
		return nil, fmt.Errorf("cgroup v2 manager: %w", err)
	}
	return &Job{id: id, m: m, procs: dir, v2dir: dir}, nil
}

func (b *v2) jobs() ([]string, error) { return subdirs(b.parent) }

// removeParent removes <own>/<name>. The daemon leaf stays: the daemon is
// still running in it.
func (b *v2) removeParent() error { return cgroups.RemovePath(b.parent) }

// kill uses cgroup.kill (kernel 5.14+), which kills every process of the
// cgroup at once, forks included. ok is false when the kernel lacks it.
func kill(dir string) (ok bool, err error) {
	if !cgroups.PathExists(filepath.Join(dir, "cgroup.kill")) {
		return false, nil
	}
	err = cgroups.WriteFile(dir, "cgroup.kill", "1")
	if errors.Is(err, unix.ENODEV) || errors.Is(err, os.ErrNotExist) {
		// Removed meanwhile (systemd prunes a scope once its last process
		// is gone): nothing is left to kill.
		return true, nil
	}
	return true, err
}

// waitEmpty waits until dir's cgroup.procs is empty.
func waitEmpty(procsDir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := allPids(procsDir)
		if errors.Is(err, os.ErrNotExist) || (err == nil && len(pids) == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list processes: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes remain after %v (pid %d first)", len(pids), timeout, pids[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
