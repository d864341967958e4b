// Package cgroup gives every job a cgroup of its own, nested under the
// cgroup the isolator runs in, with all limits written before any job
// process exists. It chooses cgroup v2 or v1 (including hybrid hosts, where
// the controllers are on v1) once, in NewParent, and uses
// github.com/opencontainers/cgroups (the fs and fs2 managers) to create
// cgroups, write limits, read statistics and freeze. See README.md for the
// call order the job lifecycle must follow.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fscommon"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// DefaultName is the parent cgroup's name under the isolator's own cgroup.
const DefaultName = "joblet"

// killTimeout bounds how long KillAll waits for a job's processes to go.
const killTimeout = 10 * time.Second

// Options tune NewParent.
type Options struct {
	// Name of the parent cgroup; DefaultName when empty. Tests use their
	// own so they never touch a running daemon's jobs. With the systemd
	// driver, jobs' scopes are <Name>-<id>.scope.
	Name string
	// Driver is DriverAuto (when empty), DriverCgroupfs or DriverSystemd.
	Driver string
	// Slice holds the jobs' scopes with the systemd driver; <Name>.slice
	// when empty.
	Slice string
}

// Parent is the cgroup under which every job cgroup lives.
type Parent struct {
	log         zerolog.Logger
	b           backend
	sysDevBlock string
}

// backend is what differs between cgroup v1 and v2.
type backend interface {
	version() int
	create(id string, r *cgroups.Resources) (*Job, error)
	open(id string) (*Job, error)
	jobs() ([]string, error)
	removeParent() error
}

// NewParent detects the cgroup version, finds the isolator's own cgroup
// (/proc/self/cgroup) and chooses the driver (Options.Driver): with
// cgroupfs it creates the parent cgroup beneath its own, with systemd it
// checks that systemd answers (jobs get scopes of their own). Call it once
// at start, as root, then Cleanup.
func NewParent(log zerolog.Logger, opts Options) (*Parent, error) {
	name := opts.Name
	if name == "" {
		name = DefaultName
	}
	if !validID.MatchString(name) {
		return nil, fmt.Errorf("bad cgroup name %q", name)
	}
	var b backend
	if cgroups.IsCgroup2UnifiedMode() {
		own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
		if err != nil {
			return nil, fmt.Errorf("read own cgroup: %w", err)
		}
		sd, err := useSystemd(opts.Driver, true, own[""])
		if err != nil {
			return nil, err
		}
		if sd {
			s, err := newSystemd(log, name, opts.Slice, fs2Root, dialSystemd, mkdir)
			if err != nil {
				return nil, err
			}
			log.Info().Str("slice", s.slice).Msg("cgroup driver systemd: each job gets a transient scope")
			b = s
		} else {
			v, err := newV2(log, fs2Root+own[""], name, mkdir)
			if err != nil {
				return nil, err
			}
			b = v
		}
	} else {
		if _, err := useSystemd(opts.Driver, false, ""); err != nil {
			return nil, err
		}
		v, err := newV1(name)
		if err != nil {
			return nil, err
		}
		b = v
	}
	log.Info().Int("cgroup_version", b.version()).Str("cgroup", name).Msg("job cgroups ready")
	return &Parent{log: log, b: b, sysDevBlock: "/sys/dev/block"}, nil
}

// fs2Root is where the unified hierarchy is mounted on a v2 host.
const fs2Root = "/sys/fs/cgroup"

func mkdir(dir string) error { return os.Mkdir(dir, 0o755) }

// Version is 2 on a unified (v2) host and 1 on a v1 or hybrid host.
func (p *Parent) Version() int { return p.b.version() }

// validID keeps a job id a single safe path element.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Create makes the cgroup of job id with the effective limits l (from
// limits.Resolve: zero means unlimited) written, before any process is in
// it. workDir is the job's workspace: with an IO limit, the disk that backs
// it is throttled. On error nothing is left behind.
func (p *Parent) Create(id string, l *jobletv1.Limits, workDir string) (*Job, error) {
	dev, err := p.checkJob(id, l, workDir)
	if err != nil {
		return nil, err
	}
	j, err := p.b.create(id, resources(l, dev))
	if err != nil {
		return nil, fmt.Errorf("cgroup of job %s: %w", id, err)
	}
	p.log.Debug().Str("job_id", id).Any("paths", j.Paths()).Msg("job cgroup created")
	return j, nil
}

// checkJob checks job id and, with an IO limit in l, returns the disk that
// backs workDir, which the limit throttles.
func (p *Parent) checkJob(id string, l *jobletv1.Limits, workDir string) (device, error) {
	if !validID.MatchString(id) {
		return device{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "bad job id %q", id)
	}
	if l.GetMaxIoBps() > 0 {
		return blockDevice(p.sysDevBlock, workDir)
	}
	return device{}, nil
}

// Cleanup kills and removes job cgroups left by an earlier run of the
// daemon. Call it after NewParent, before the first Create.
func (p *Parent) Cleanup() error {
	return p.CleanupExcept(func(string) bool { return false })
}

// Remove removes every job cgroup, every spare (their shims stopped
// first) and the parent itself, at shutdown.
func (p *Parent) Remove() error {
	if err := p.Cleanup(); err != nil {
		return err
	}
	if err := p.CleanupSpares(); err != nil {
		return err
	}
	return p.b.removeParent()
}

// RemoveIfUnused removes the parent at shutdown when no job cgroup is left
// in it (jobs left running for the next isolator keep it).
func (p *Parent) RemoveIfUnused() error {
	ids, err := p.b.jobs()
	if err != nil {
		return fmt.Errorf("list job cgroups: %w", err)
	}
	if len(ids) > 0 {
		return nil
	}
	if err := p.CleanupSpares(); err != nil {
		return err
	}
	return p.b.removeParent()
}

func subdirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Job is one job's cgroup.
type Job struct {
	id    string
	m     manager
	procs string // a directory whose cgroup.procs lists the job's processes
	v2dir string // the job's directory on cgroup v2; "" on v1

	// sd is set with the systemd driver; until Place, m is nil: nothing
	// of the cgroup exists.
	sd *sdJob

	mu sync.Mutex
	fd *os.File // open cgroup v2 directory for CLONE_INTO_CGROUP
}

// errNotPlaced is what a Job of the systemd driver returns before Place.
var errNotPlaced = errors.New("the job's scope is not made yet: Place the job's shim first")

// Place makes sure the job's cgroup exists and returns its directories
// (as Paths). pid is the job's shim, started and waiting for its spec.
// With the cgroupfs driver the cgroup exists since Create and nothing
// changes; with the systemd driver the shim becomes the first process of
// the job's scope (in its leaf "shim") and the job's cgroup, with its
// limits, is made next to it. On error nothing of the scope is left.
func (j *Job) Place(pid int) (map[string]string, error) {
	if j.sd != nil {
		if err := j.sd.place(j, pid); err != nil {
			return nil, fmt.Errorf("scope of job %s: %w", j.id, err)
		}
	}
	return j.Paths(), nil
}

// manager is the part of the library's managers a Job uses.
type manager interface {
	Freeze(state cgroups.FreezerState) error
	Stats(opts *cgroups.StatsOptions) (*cgroups.Stats, error)
	OOMKillCount() (uint64, error)
	Set(r *cgroups.Resources) error
	GetPaths() map[string]string
	Destroy() error
}

// abort removes a half-made cgroup and returns err.
func (j *Job) abort(err error) error {
	if derr := j.m.Destroy(); derr != nil {
		return errors.Join(err, fmt.Errorf("remove half-made cgroup: %w", derr))
	}
	return err
}

// Paths are the job's cgroup directories, by controller ("" on v2); nil
// before Place with the systemd driver.
func (j *Job) Paths() map[string]string {
	if j.m == nil {
		return nil
	}
	return j.m.GetPaths()
}

// UseCgroupFD makes a process started with attr begin life inside the job's
// cgroup (clone3 CLONE_INTO_CGROUP), so no instruction of it runs outside
// the limits. It returns false on cgroup v1, which has no such thing: start
// the process stopped at a handshake and call Apply with its pid instead.
// The descriptor stays open until Destroy.
func (j *Job) UseCgroupFD(attr *syscall.SysProcAttr) (bool, error) {
	if j.m == nil {
		return false, errNotPlaced
	}
	if j.v2dir == "" {
		return false, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fd == nil {
		f, err := os.OpenFile(j.v2dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Errorf("open job cgroup: %w", err)
		}
		j.fd = f
	}
	attr.UseCgroupFD = true
	attr.CgroupFD = int(j.fd.Fd())
	return true, nil
}

// Apply moves process pid (the job's init, before it runs the job's
// command) into the job's cgroup in every hierarchy it joins (Paths). A
// directory two controllers share (cpu and cpuacct mounted together, as
// many distributions do) is written once: every write takes the kernel's
// cgroup migration lock while the job's init waits at its start gate.
func (j *Job) Apply(pid int) error {
	if j.m == nil {
		return errNotPlaced
	}
	done := make(map[string]bool)
	for _, dir := range j.m.GetPaths() {
		if done[dir] {
			continue
		}
		done[dir] = true
		if err := cgroups.WriteCgroupProc(dir, pid); err != nil {
			return fmt.Errorf("move pid %d into cgroup of job %s: %w", pid, j.id, err)
		}
	}
	return nil
}

// Pids lists the processes in the job's cgroup, including its sub-cgroups.
func (j *Job) Pids() ([]int, error) {
	if j.m == nil {
		return nil, nil
	}
	pids, err := allPids(j.procs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return pids, err
}

// Usage is what a job used, from the kernel's own counters.
type Usage struct {
	CPUTime         time.Duration `json:"cpu_time"`          // user + system CPU time
	MemoryPeakBytes uint64        `json:"memory_peak_bytes"` // v2 memory.peak (5.19+), v1 memory.max_usage_in_bytes
	OOMKills        uint64        `json:"oom_kills"`         // processes the kernel OOM killer killed in the job
}

// Stats reads the job's usage. Call it after the job's processes are gone
// and before Destroy, which takes the counters with it. It reads the three
// counters it reports and nothing else: the library's Stats reads every
// file of the cpu, cpuacct and memory controllers (on v1 ~0.28 ms against
// ~0.03, BenchmarkStatsAndRunning), and a job's end waits for this.
func (j *Job) Stats() (Usage, error) {
	if j.m == nil {
		return Usage{}, errNotPlaced
	}
	var u Usage
	var err error
	if j.v2dir != "" {
		u, err = statsV2(j.v2dir)
	} else {
		paths := j.m.GetPaths()
		u, err = statsV1(paths["cpuacct"], paths["memory"])
	}
	if err != nil {
		return Usage{}, fmt.Errorf("cgroup stats of job %s: %w", j.id, err)
	}
	// The library reads v1 memory.oom_control and v2 memory.events for the
	// kill count.
	if u.OOMKills, err = j.m.OOMKillCount(); err != nil {
		return Usage{}, fmt.Errorf("OOM kill count of job %s: %w", j.id, err)
	}
	return u, nil
}

// statsV1 reads a v1 job's CPU time (cpuacct.usage, ns) and peak memory
// (memory.max_usage_in_bytes). A job always joins both hierarchies.
func statsV1(cpuacct, memory string) (Usage, error) {
	if cpuacct == "" || memory == "" {
		return Usage{}, errors.New("no cpuacct or memory hierarchy")
	}
	ns, err := fscommon.GetCgroupParamUint(cpuacct, "cpuacct.usage")
	if err != nil {
		return Usage{}, err
	}
	peak, err := fscommon.GetCgroupParamUint(memory, "memory.max_usage_in_bytes")
	if err != nil {
		return Usage{}, err
	}
	return Usage{CPUTime: time.Duration(ns), MemoryPeakBytes: peak}, nil
}

// statsV2 reads a v2 job's CPU time (cpu.stat usage_usec) and peak memory
// (memory.peak, kernel 5.19+; zero before, as the library reports it).
func statsV2(dir string) (Usage, error) {
	us, err := fscommon.GetValueByKey(dir, "cpu.stat", "usage_usec")
	if err != nil {
		return Usage{}, err
	}
	peak, err := fscommon.GetCgroupParamUint(dir, "memory.peak")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Usage{}, err
	}
	return Usage{CPUTime: time.Duration(us) * time.Microsecond, MemoryPeakBytes: peak}, nil
}

// Signal sends sig to every process in the job. The cgroup is frozen while
// it lists and signals, so a forking job cannot add a process in between;
// if it cannot be frozen (a process in uninterruptible IO), it signals
// anyway.
func (j *Job) Signal(sig syscall.Signal) error {
	if j.m == nil {
		return nil
	}
	if err := j.m.Freeze(cgroups.Frozen); err == nil {
		defer func() { _ = j.m.Freeze(cgroups.Thawed) }()
	}
	pids, err := j.Pids()
	if err != nil {
		return fmt.Errorf("list processes of job %s: %w", j.id, err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal pid %d of job %s: %w", pid, j.id, err)
		}
	}
	return nil
}

// KillAll kills every process of the job and waits until none is left: with
// cgroup.kill on v2 (kernel 5.14+), else by freezing and SIGKILLing until
// the cgroup is empty. Processes already exiting (Running) are only waited
// for: they need no signal, and freezing would wait for them.
func (j *Job) KillAll() error {
	if j.m == nil {
		return nil
	}
	if j.v2dir != "" {
		ok, err := kill(j.v2dir)
		if err != nil {
			return fmt.Errorf("kill job %s: %w", j.id, err)
		}
		if ok {
			return waitEmpty(j.procs, killTimeout)
		}
	}
	deadline := time.Now().Add(killTimeout)
	for {
		pids, err := j.Pids()
		if err != nil {
			return fmt.Errorf("list processes of job %s: %w", j.id, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("job %s: %d processes survive SIGKILL", j.id, len(pids))
		}
		live, err := running(pids)
		if err != nil {
			return fmt.Errorf("job %s: %w", j.id, err)
		}
		if len(live) == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		if err := j.Signal(unix.SIGKILL); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Destroy kills whatever is left in the job's cgroup and removes it from
// every hierarchy it has; with the systemd driver it stops the job's scope, which
// kills the shim if it still runs. It is idempotent.
func (j *Job) Destroy() error {
	kerr := j.KillAll()
	j.mu.Lock()
	if j.fd != nil {
		_ = j.fd.Close()
		j.fd = nil
	}
	j.mu.Unlock()
	// systemd removes a stopped scope's cgroups; what it left (or the
	// cgroupfs driver's cgroup) is removed here.
	if j.sd != nil && j.sd.placed {
		if err := j.sd.b.stopScope(j.sd.unit); err != nil {
			return errors.Join(kerr, fmt.Errorf("scope of job %s: %w", j.id, err))
		}
	}
	if j.m != nil {
		if err := j.m.Destroy(); err != nil {
			return errors.Join(kerr, fmt.Errorf("remove cgroup of job %s: %w", j.id, err))
		}
	}
	return kerr
}
