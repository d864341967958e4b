package cgroup

import (
	"context"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/rs/zerolog"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// fakeSystemd answers the driver's D-Bus calls the way systemd does on
// the fake cgroupfs: starting a scope makes its cgroup (with the pid in
// it), stopping one removes its cgroup tree.
type fakeSystemd struct {
	t        *testing.T
	k        *fakeKernel
	sliceDir string

	mu      sync.Mutex
	started []string
	props   map[string][]sddbus.Property
	stopped []string
	dials   int
	// startResult is the job result StartTransientUnit reports ("done"
	// when empty).
	startResult string
}

func (f *fakeSystemd) dial(context.Context) (sdConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dials++
	return fakeConn{f}, nil
}

type fakeConn struct{ f *fakeSystemd }

func (c fakeConn) StartTransientUnitContext(_ context.Context, name, mode string, props []sddbus.Property, ch chan<- string) (int, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if mode != "fail" {
		f.t.Errorf("start %s: mode %q, want fail", name, mode)
	}
	f.started = append(f.started, name)
	if f.props == nil {
		f.props = map[string][]sddbus.Property{}
	}
	f.props[name] = props
	if f.startResult != "" && f.startResult != "done" {
		ch <- f.startResult
		return 1, nil
	}
	dir := filepath.Join(f.sliceDir, name)
	must(f.t, os.MkdirAll(f.sliceDir, 0o755))
	must(f.t, f.k.mkdir(dir))
	ch <- "done"
	return 1, nil
}

func (c fakeConn) StopUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, name)
	dir := filepath.Join(f.sliceDir, name)
	if _, err := os.Stat(dir); err != nil {
		return 0, godbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Unit " + name + " not loaded."}}
	}
	must(f.t, os.RemoveAll(dir))
	ch <- "done"
	return 2, nil
}

func (fakeConn) Close() {}

// newFakeSystemdParent is a Parent with the systemd driver on a fake
// cgroupfs rooted in a temp dir.
func newFakeSystemdParent(t *testing.T, k *fakeKernel, slice string) (*Parent, *fakeSystemd) {
	fakeCgroupfs(t)
	root := t.TempDir()
	f := &fakeSystemd{t: t, k: k}
	b, err := newSystemd(zerolog.Nop(), "joblet", slice, root, f.dial, k.mkdir)
	if err != nil {
		t.Fatalf("newSystemd: %v", err)
	}
	f.sliceDir = b.sliceDir
	return &Parent{log: zerolog.Nop(), b: b, sysDevBlock: fakeSysBlock(t, "")}, f
}

func propValue(props []sddbus.Property, name string) (any, bool) {
	for _, p := range props {
		if p.Name == name {
			return p.Value.Value(), true
		}
	}
	return nil, false
}

func TestUseSystemd(t *testing.T) {
	run := t.TempDir()
	none := filepath.Join(run, "missing")
	for _, c := range []struct {
		driver  string
		v2      bool
		booted  bool
		own     string
		want    bool
		wantErr string
	}{
		{driver: "", v2: true, booted: true, own: "/system.slice/joblet-isolator.service", want: true},
		{driver: "auto", v2: true, booted: true, own: "/system.slice/joblet-isolator.service", want: true},
		// Embedded mode, a shell, a test: not a service of systemd's.
		{driver: "auto", v2: true, booted: true, own: "/user.slice/user-0.slice/session-3.scope"},
		{driver: "auto", v2: true, booted: false, own: "/system.slice/joblet-isolator.service"},
		{driver: "auto", v2: false, booted: true},
		{driver: "cgroupfs", v2: true, booted: true, own: "/system.slice/joblet-isolator.service"},
		{driver: "systemd", v2: true, booted: true, own: "/", want: true},
		{driver: "systemd", v2: false, booted: true, wantErr: "cgroup driver systemd needs the unified cgroup v2 hierarchy"},
		{driver: "systemd", v2: true, booted: false, wantErr: "cgroup driver systemd: systemd is not the init system (no " + none + ")"},
		{driver: "docker", v2: true, booted: true, wantErr: `unknown cgroup driver "docker" (want auto, cgroupfs or systemd)`},
	} {
		systemdRunDir = run
		if !c.booted {
			systemdRunDir = none
		}
		got, err := useSystemd(c.driver, c.v2, c.own)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("useSystemd(%q, v2=%v, booted=%v) error = %v, want %q", c.driver, c.v2, c.booted, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("useSystemd(%q, v2=%v, booted=%v, %q) = %v, %v; want %v", c.driver, c.v2, c.booted, c.own, got, err, c.want)
		}
	}
	systemdRunDir = "/run/systemd/system"
}

func TestSystemdPlaceMakesScopeThenJobCgroup(t *testing.T) {
	k := newFakeKernel(t)
	p, f := newFakeSystemdParent(t, k, "")
	if want := "joblet.slice"; !strings.HasSuffix(f.sliceDir, "/"+want) {
		t.Fatalf("slice dir %s, want .../%s", f.sliceDir, want)
	}
	l := &jobletv1.Limits{MaxCpuPercent: 25, MaxMemoryMb: 64, MaxPids: 64}
	j, err := p.Create("job1", l, t.TempDir())
	must(t, err)
	// Nothing exists before the shim does.
	if len(f.started) != 0 || j.Paths() != nil {
		t.Fatalf("Create started %v, paths %v; want nothing yet", f.started, j.Paths())
	}
	if _, err := j.UseCgroupFD(&syscall.SysProcAttr{}); !errors.Is(err, errNotPlaced) {
		t.Errorf("UseCgroupFD before Place = %v, want errNotPlaced", err)
	}
	if err := j.Apply(1); !errors.Is(err, errNotPlaced) {
		t.Errorf("Apply before Place = %v, want errNotPlaced", err)
	}

	paths, err := j.Place(4242)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	scope := filepath.Join(f.sliceDir, "joblet-job1.scope")
	if want := map[string]string{"": filepath.Join(scope, "job")}; !maps.Equal(paths, want) {
		t.Errorf("Place paths = %v, want %v", paths, want)
	}
	if !slices.Equal(f.started, []string{"joblet-job1.scope"}) {
		t.Errorf("started units %v", f.started)
	}
	props := f.props["joblet-job1.scope"]
	for name, want := range map[string]any{
		"Slice":       "joblet.slice",
		"PIDs":        []uint32{4242},
		"Delegate":    true,
		"TasksMax":    uint64(math.MaxUint64),
		"CollectMode": "inactive-or-failed",
	} {
		got, ok := propValue(props, name)
		if !ok {
			t.Errorf("scope property %s missing", name)
			continue
		}
		if gs, ok := got.([]uint32); ok {
			if !slices.Equal(gs, want.([]uint32)) {
				t.Errorf("scope property %s = %v, want %v", name, got, want)
			}
		} else if got != want {
			t.Errorf("scope property %s = %v, want %v", name, got, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(scope, "shim")); err != nil || !fi.IsDir() {
		t.Errorf("no shim leaf in the scope: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(scope, "cgroup.subtree_control")); string(b) != "+cpu +cpuset +io +memory +pids" {
		t.Errorf("scope subtree_control = %q", b)
	}
	want := map[string]string{
		"cpu.max":          "25000 100000",
		"memory.max":       "67108864",
		"memory.swap.max":  "0",
		"memory.oom.group": "1",
		"pids.max":         "64",
	}
	if got := k.changed(filepath.Join(scope, "job")); !maps.Equal(got, want) {
		t.Errorf("job cgroup files:\n got %v\nwant %v", got, want)
	}
	attr := &syscall.SysProcAttr{}
	if in, err := j.UseCgroupFD(attr); !in || err != nil || !attr.UseCgroupFD {
		t.Errorf("UseCgroupFD after Place = %v, %v", in, err)
	}
	if _, err := j.Place(4242); err == nil {
		t.Error("a second Place succeeded")
	}

	// The jobs of this driver are its scopes.
	ids, err := p.b.jobs()
	if err != nil || !slices.Equal(ids, []string{"job1"}) {
		t.Errorf("jobs = %v, %v; want [job1]", ids, err)
	}
	must(t, j.Destroy())
	if !slices.Equal(f.stopped, []string{"joblet-job1.scope"}) {
		t.Errorf("stopped units %v, want the job's scope", f.stopped)
	}
	// Idempotent, also once systemd has collected the scope.
	if err := j.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func TestSystemdPlaceFailures(t *testing.T) {
	t.Run("systemd refuses the scope", func(t *testing.T) {
		k := newFakeKernel(t)
		p, f := newFakeSystemdParent(t, k, "")
		f.startResult = "failed"
		j, err := p.Create("job1", &jobletv1.Limits{}, "")
		must(t, err)
		_, err = j.Place(7)
		if err == nil || !strings.Contains(err.Error(), "start joblet-job1.scope: systemd job failed") {
			t.Fatalf("Place = %v", err)
		}
		// Nothing was made, so nothing is stopped.
		must(t, j.Destroy())
		if len(f.stopped) != 0 {
			t.Errorf("stopped %v after a scope that never started", f.stopped)
		}
	})
	t.Run("controllers missing in the scope", func(t *testing.T) {
		k := newFakeKernel(t)
		k.files["cgroup.controllers"] = "cpu memory pids\n"
		p, f := newFakeSystemdParent(t, k, "jobs-test.slice")
		j, err := p.Create("job2", &jobletv1.Limits{}, "")
		must(t, err)
		_, err = j.Place(7)
		if err == nil || !strings.Contains(err.Error(), "lacks controllers cpuset,io") {
			t.Fatalf("Place = %v", err)
		}
		// The half-made scope is stopped again (and with it the shim).
		if !slices.Equal(f.stopped, []string{"joblet-job2.scope"}) {
			t.Errorf("stopped %v, want the half-made scope", f.stopped)
		}
		if _, err := os.Stat(filepath.Join(f.sliceDir, "joblet-job2.scope")); !os.IsNotExist(err) {
			t.Errorf("scope cgroup left: %v", err)
		}
		if got, _ := propValue(f.props["joblet-job2.scope"], "Slice"); got != "jobs-test.slice" {
			t.Errorf("slice = %v, want the configured one", got)
		}
	})
}

func TestSystemdCleanupStopsStaleScopes(t *testing.T) {
	k := newFakeKernel(t)
	p, f := newFakeSystemdParent(t, k, "")
	for _, id := range []string{"keep", "stale"} {
		j, err := p.Create(id, &jobletv1.Limits{}, "")
		must(t, err)
		_, err = j.Place(100)
		must(t, err)
	}
	// Not this suite's: another name's scope, a nested slice.
	must(t, k.mkdir(filepath.Join(f.sliceDir, "other-x.scope")))
	must(t, k.mkdir(filepath.Join(f.sliceDir, "joblet-dev.slice")))
	if err := p.CleanupExcept(func(id string) bool { return id == "keep" }); err != nil {
		t.Fatalf("CleanupExcept: %v", err)
	}
	if !slices.Equal(f.stopped, []string{"joblet-stale.scope"}) {
		t.Errorf("stopped %v, want only the stale scope", f.stopped)
	}
	// A restarted isolator opens the kept job's cgroup in its scope.
	j, err := p.Open("keep")
	must(t, err)
	if want := filepath.Join(f.sliceDir, "joblet-keep.scope", "job"); j.Paths()[""] != want {
		t.Errorf("Open paths = %v, want %s", j.Paths(), want)
	}
	must(t, p.RemoveIfUnused())
	if _, err := os.Stat(filepath.Join(f.sliceDir, "joblet-keep.scope")); err != nil {
		t.Errorf("RemoveIfUnused touched a running job's scope: %v", err)
	}
}
