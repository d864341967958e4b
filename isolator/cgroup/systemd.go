package cgroup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	cgsystemd "github.com/opencontainers/cgroups/systemd"
	"github.com/rs/zerolog"
)

// Cgroup drivers, the values of Options.Driver.
const (
	// DriverAuto picks DriverSystemd when the isolator runs as a systemd
	// service on cgroup v2, DriverCgroupfs otherwise.
	DriverAuto = "auto"
	// DriverCgroupfs nests job cgroups under the isolator's own cgroup.
	DriverCgroupfs = "cgroupfs"
	// DriverSystemd gives every job a transient scope unit of its own.
	DriverSystemd = "systemd"
)

// Leaves of a job's scope: its shim and the job itself. The scope's own
// cgroup holds no process once the shim is moved, so controllers can be
// enabled for its children.
const (
	scopeShimLeaf = "shim"
	scopeJobLeaf  = "job"
)

// sdTimeout bounds one call to systemd, including the wait for its job.
const sdTimeout = 30 * time.Second

// systemdRunDir exists when systemd is the init system (sd_booted(3)).
var systemdRunDir = "/run/systemd/system"

// sdConn is the part of go-systemd's D-Bus connection the driver uses;
// tests use a fake.
type sdConn interface {
	StartTransientUnitContext(ctx context.Context, name, mode string, props []sddbus.Property, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	Close()
}

// dialSystemd connects to systemd's private socket, which needs no D-Bus
// daemon (minimal hosts have none) and root, which the isolator is.
func dialSystemd(ctx context.Context) (sdConn, error) {
	return sddbus.NewSystemdConnectionContext(ctx)
}

// useSystemd decides the driver: own is the isolator's cgroup path on the
// unified hierarchy ("" on v1). With auto, systemd manages the host's
// cgroups when it is the init system and the isolator is one of its
// services; a daemon started any other way (embedded mode, a test, another
// init) keeps the cgroupfs layout.
func useSystemd(driver string, v2 bool, own string) (bool, error) {
	_, err := os.Stat(systemdRunDir)
	booted := err == nil
	switch driver {
	case "", DriverAuto:
		return v2 && booted && strings.HasSuffix(filepath.Base(own), ".service"), nil
	case DriverCgroupfs:
		return false, nil
	case DriverSystemd:
		if !v2 {
			return false, errors.New("cgroup driver systemd needs the unified cgroup v2 hierarchy")
		}
		if !booted {
			return false, fmt.Errorf("cgroup driver systemd: systemd is not the init system (no %s)", systemdRunDir)
		}
		return true, nil
	default:
		return false, fmt.Errorf("unknown cgroup driver %q (want auto, cgroupfs or systemd)", driver)
	}
}

// sdBackend puts job id in the transient scope <name>-<id>.scope in a
// slice, created over D-Bus with Delegate=yes. A scope needs a process
// when it is made, so the job's cgroup is made in Job.Place, with the pid
// of the job's shim, not in Create: the shim is moved into the leaf
// <scope>/shim, the job controllers are enabled in the scope and the job's
// cgroup <scope>/job gets its limits, all before the shim is told to start
// the job. The isolator's own cgroup is never touched, so systemd can
// always put a restarted isolator back into it; the scopes are units of
// their own and outlive it. systemd removes a scope, with every cgroup in
// it, once its last process is gone.
type sdBackend struct {
	log      zerolog.Logger
	name     string // scopes are <name>-<id>.scope
	slice    string
	sliceDir string // the slice's cgroup directory
	dial     func(context.Context) (sdConn, error)
	mkdir    func(string) error
}

func newSystemd(log zerolog.Logger, name, slice, root string, dial func(context.Context) (sdConn, error), mkdir func(string) error) (*sdBackend, error) {
	if slice == "" {
		slice = name + ".slice"
	}
	rel, err := cgsystemd.ExpandSlice(slice)
	if err != nil {
		return nil, fmt.Errorf("cgroup slice %q: %w", slice, err)
	}
	b := &sdBackend{log: log, name: name, slice: slice, sliceDir: filepath.Join(root, rel), dial: dial, mkdir: mkdir}
	// Fail at start, not at the first job, when systemd cannot be reached.
	ctx, cancel := context.WithTimeout(context.Background(), sdTimeout)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	c.Close()
	return b, nil
}

func (b *sdBackend) version() int { return 2 }

func (b *sdBackend) unit(id string) string { return b.name + "-" + id + ".scope" }

// create makes nothing yet: the scope needs the shim's pid (Job.Place).
func (b *sdBackend) create(id string, r *cgroups.Resources) (*Job, error) {
	return &Job{id: id, sd: &sdJob{b: b, unit: b.unit(id), res: r}}, nil
}

// open returns the job's cgroup in its scope, which may be gone already if
// the job ended while no isolator ran: then it is empty and Destroy only
// makes sure the scope is stopped.
func (b *sdBackend) open(id string) (*Job, error) {
	unit := b.unit(id)
	dir := filepath.Join(b.sliceDir, unit, scopeJobLeaf)
	m, err := fs2.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}, dir)
	if err != nil {
		return nil, fmt.Errorf("cgroup v2 manager: %w", err)
	}
	return &Job{id: id, m: m, procs: dir, v2dir: dir, sd: &sdJob{b: b, unit: unit, placed: true}}, nil
}

// jobs lists the ids of this backend's scopes that exist in the slice.
func (b *sdBackend) jobs() ([]string, error) {
	names, err := subdirs(b.sliceDir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range names {
		id, ok := strings.CutPrefix(n, b.name+"-")
		if !ok {
			continue
		}
		if id, ok = strings.CutSuffix(id, ".scope"); ok && validID.MatchString(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// removeParent has nothing to remove: the slice is systemd's, which
// removes it when its last scope goes.
func (b *sdBackend) removeParent() error { return nil }

// call runs one systemd job-making method and waits for the job's result.
func (b *sdBackend) call(what string, f func(c sdConn, ctx context.Context, ch chan<- string) (int, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), sdTimeout)
	defer cancel()
	c, err := b.dial(ctx)
	if err != nil {
		return fmt.Errorf("%s: connect to systemd: %w", what, err)
	}
	defer c.Close()
	ch := make(chan string, 1)
	if _, err := f(c, ctx, ch); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s: systemd job %s", what, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// startScope makes the scope unit with pid in it.
func (b *sdBackend) startScope(unit, id string, pid int) error {
	props := []sddbus.Property{
		sddbus.PropDescription("Joblet job " + id),
		sddbus.PropSlice(b.slice),
		sddbus.PropPids(uint32(pid)),
		// The isolator manages the cgroups inside the scope.
		{Name: "Delegate", Value: godbus.MakeVariant(true)},
		// Each job has its own pids limit; the default TasksMax would
		// cap it lower.
		{Name: "TasksMax", Value: godbus.MakeVariant(uint64(math.MaxUint64))},
		// A scope whose processes were killed ends "failed"; it must not
		// stay loaded for that.
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
	}
	return b.call("start "+unit, func(c sdConn, ctx context.Context, ch chan<- string) (int, error) {
		return c.StartTransientUnitContext(ctx, unit, "fail", props, ch)
	})
}

// stopScope stops the scope unit, killing what is left in it; a scope
// systemd has already collected is not an error.
func (b *sdBackend) stopScope(unit string) error {
	err := b.call("stop "+unit, func(c sdConn, ctx context.Context, ch chan<- string) (int, error) {
		return c.StopUnitContext(ctx, unit, "replace", ch)
	})
	var de godbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.NoSuchUnit" {
		return nil
	}
	return err
}

// sdJob is the systemd part of a Job.
type sdJob struct {
	b      *sdBackend
	unit   string
	res    *cgroups.Resources // the limits, until Place writes them
	placed bool               // the scope was made (Place) or found (open)
}

// place makes j's scope with pid (the job's shim) in it and the job's
// cgroup inside it; on error the scope is stopped again.
func (s *sdJob) place(j *Job, pid int) (err error) {
	if s.placed {
		return fmt.Errorf("cgroup of job %s: already placed", j.id)
	}
	if err := s.b.startScope(s.unit, j.id, pid); err != nil {
		return err
	}
	s.placed = true
	defer func() {
		if err != nil {
			if serr := s.b.stopScope(s.unit); serr != nil {
				err = errors.Join(err, serr)
			}
		}
	}()
	dir := filepath.Join(s.b.sliceDir, s.unit)
	if err := moveProcs(dir, filepath.Join(dir, scopeShimLeaf), s.b.mkdir); err != nil {
		return err
	}
	v := &v2{own: dir, parent: dir, mkdir: s.b.mkdir}
	if err := v.enable(dir); err != nil {
		return err
	}
	made, err := v.create(scopeJobLeaf, s.res)
	if err != nil {
		return err
	}
	j.m, j.procs, j.v2dir = made.m, made.procs, made.v2dir
	s.res = nil
	s.b.log.Debug().Str("job_id", j.id).Str("unit", s.unit).Int("shim_pid", pid).Msg("job scope created")
	return nil
}
