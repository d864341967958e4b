package cgroup

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// fakeKernel makes a directory the way cgroupfs does on mkdir: the
// interface files of a v2 cgroup appear in it, with the kernel's defaults.
type fakeKernel struct {
	t     *testing.T
	files map[string]string
}

func newFakeKernel(t *testing.T) *fakeKernel {
	return &fakeKernel{t: t, files: map[string]string{
		"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
		"cgroup.procs":       "",
		"cgroup.kill":        "",
		"cgroup.freeze":      "0\n",
		"cpu.max":            "max 100000\n",
		"cpu.stat":           "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
		"cpuset.cpus":        "",
		"io.max":             "",
		"memory.max":         "max\n",
		"memory.swap.max":    "max\n",
		"memory.oom.group":   "0\n",
		"pids.max":           "max\n",
	}}
}

func (k *fakeKernel) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for name, content := range k.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			k.t.Fatal(err)
		}
	}
	return nil
}

// changed returns the files of dir whose content is not the kernel's default.
func (k *fakeKernel) changed(dir string) map[string]string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		k.t.Fatal(err)
	}
	out := make(map[string]string)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			k.t.Fatal(err)
		}
		if def, ok := k.files[e.Name()]; !ok || def != string(b) {
			out[e.Name()] = string(b)
		}
	}
	return out
}

// fakeCgroupfs lets the library write to plain files for one test.
func fakeCgroupfs(t *testing.T) {
	cgroups.TestMode = true
	t.Cleanup(func() { cgroups.TestMode = false })
}

// newFakeParent builds a v2 parent in a fake cgroupfs whose "isolator
// cgroup" is <tmp>/own, and a fake /sys/dev/block mapping the temp dir's
// real device to a disk.
func newFakeParent(t *testing.T, k *fakeKernel) (*Parent, string) {
	fakeCgroupfs(t)
	root := t.TempDir()
	own := filepath.Join(root, "own")
	if err := k.mkdir(own); err != nil {
		t.Fatal(err)
	}
	b, err := newV2(zerolog.Nop(), own, "joblet", k.mkdir)
	if err != nil {
		t.Fatalf("newV2: %v", err)
	}
	return &Parent{log: zerolog.Nop(), b: b, sysDevBlock: fakeSysBlock(t, "")}, own
}

// fakeSysBlock makes a /sys/dev/block in which the device of a temp dir is
// the disk "vda" (254:0 style), or a partition of disk 8:0 when partOf is
// "8:0".
func fakeSysBlock(t *testing.T, partOf string) string {
	dev, err := tempDirDevice(t)
	if err != nil {
		t.Fatal(err)
	}
	sys := t.TempDir()
	disk := filepath.Join(sys, "devices", "disk")
	node := disk
	if partOf != "" {
		node = filepath.Join(disk, "disk1")
		must(t, os.MkdirAll(node, 0o755))
		must(t, os.WriteFile(filepath.Join(node, "partition"), []byte("1\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(disk, "dev"), []byte(partOf+"\n"), 0o644))
	} else {
		must(t, os.MkdirAll(node, 0o755))
		must(t, os.WriteFile(filepath.Join(node, "dev"), []byte(dev.String()+"\n"), 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(sys, "dev", "block"), 0o755))
	must(t, os.Symlink(node, filepath.Join(sys, "dev", "block", dev.String())))
	return filepath.Join(sys, "dev", "block")
}

func tempDirDevice(t *testing.T) (device, error) {
	// An empty sysfs gives the error that names the device number.
	_, err := blockDevice(t.TempDir(), t.TempDir())
	if err == nil {
		return device{}, errors.New("no error from an empty sysfs")
	}
	msg := err.Error()
	i := strings.Index(msg, "(device ")
	j := strings.Index(msg, ")")
	if i < 0 || j < i {
		return device{}, err
	}
	return parseDevice(msg[i+len("(device ") : j])
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestV2ParentEnablesControllers(t *testing.T) {
	k := newFakeKernel(t)
	_, own := newFakeParent(t, k)
	want := "+cpu +cpuset +io +memory +pids"
	for _, dir := range []string{own, filepath.Join(own, "joblet")} {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		if err != nil || string(b) != want {
			t.Errorf("%s/cgroup.subtree_control = %q, %v; want %q", dir, b, err, want)
		}
	}
}

func TestV2ParentMissingController(t *testing.T) {
	fakeCgroupfs(t)
	k := newFakeKernel(t)
	k.files["cgroup.controllers"] = "cpu memory pids\n"
	own := filepath.Join(t.TempDir(), "own")
	must(t, k.mkdir(own))
	_, err := newV2(zerolog.Nop(), own, "joblet", k.mkdir)
	want := "cgroup " + own + " lacks controllers cpuset,io; delegate them to the isolator's cgroup"
	if err == nil || err.Error() != want {
		t.Fatalf("newV2 = %v, want %q", err, want)
	}
}

func TestV2CreateWritesAllLimits(t *testing.T) {
	k := newFakeKernel(t)
	p, own := newFakeParent(t, k)
	dev, err := tempDirDevice(t)
	must(t, err)
	l := &jobletv1.Limits{MaxCpuPercent: 25, MaxMemoryMb: 64, MaxIoBps: 10485760, CpuCores: "1", MaxPids: 64}
	j, err := p.Create("job1", l, t.TempDir())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	dir := filepath.Join(own, "joblet", "job1")
	if got := j.Paths()[""]; got != dir {
		t.Errorf("path = %q, want %q", got, dir)
	}
	want := map[string]string{
		"cpu.max":          "25000 100000",
		"memory.max":       "67108864",
		"memory.swap.max":  "0",
		"memory.oom.group": "1",
		"io.max":           dev.String() + " rbps=10485760 wbps=10485760",
		"cpuset.cpus":      "1",
		"pids.max":         "64",
	}
	if got := k.changed(dir); !maps.Equal(got, want) {
		t.Errorf("files written:\n got %v\nwant %v", got, want)
	}
}

func TestV2CreateCPUOverOneCore(t *testing.T) {
	k := newFakeKernel(t)
	p, own := newFakeParent(t, k)
	if _, err := p.Create("job1", &jobletv1.Limits{MaxCpuPercent: 150, MaxPids: 10}, ""); err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := map[string]string{"cpu.max": "150000 100000", "pids.max": "10"}
	if got := k.changed(filepath.Join(own, "joblet", "job1")); !maps.Equal(got, want) {
		t.Errorf("files written:\n got %v\nwant %v", got, want)
	}
}

func TestV2CreateOldKernel(t *testing.T) {
	k := newFakeKernel(t)
	// Before 4.19 there is no memory.oom.group; without swap accounting
	// no memory.swap.max. The library and Create must cope with both.
	delete(k.files, "memory.oom.group")
	delete(k.files, "memory.swap.max")
	p, own := newFakeParent(t, k)
	if _, err := p.Create("job1", &jobletv1.Limits{MaxMemoryMb: 64}, ""); err != nil {
		t.Fatalf("Create: %v", err)
	}
	got := k.changed(filepath.Join(own, "joblet", "job1"))
	// In the fake, the library's write creates memory.swap.max, which the
	// kernel would refuse (ENOENT, ignored); oom.group must not be written.
	if _, ok := got["memory.oom.group"]; ok || got["memory.max"] != "67108864" {
		t.Errorf("files written: %v", got)
	}
}

func TestV2CreateRejects(t *testing.T) {
	k := newFakeKernel(t)
	p, own := newFakeParent(t, k)
	if _, err := p.Create("job1", &jobletv1.Limits{}, ""); err != nil {
		t.Fatal(err)
	}
	_, err := p.Create("job1", &jobletv1.Limits{}, "")
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second Create of job1 = %v, want ErrAlreadyExists", err)
	}
	for _, id := range []string{"", "..", "a/b", "-x", strings.Repeat("a", 129)} {
		if _, err := p.Create(id, &jobletv1.Limits{}, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Create(%q) = %v, want ErrInvalidArgument", id, err)
		}
	}
	p.sysDevBlock = t.TempDir()
	dev, _ := tempDirDevice(t)
	_, err = p.Create("job2", &jobletv1.Limits{MaxIoBps: 1}, t.TempDir())
	want := "--max-iobps: the job's files are not on a block device (device " + dev.String() + "), so IO cannot be limited"
	if !errors.Is(err, errdefs.ErrInvalidArgument) || err.Error() != want {
		t.Errorf("Create on an unknown device = %v, want %q", err, want)
	}
	if _, serr := os.Stat(filepath.Join(own, "joblet", "job2")); !os.IsNotExist(serr) {
		t.Errorf("rejected job left a cgroup: %v", serr)
	}
}

func TestBlockDevicePartition(t *testing.T) {
	got, err := blockDevice(fakeSysBlock(t, "8:0"), t.TempDir())
	if err != nil || got != (device{8, 0}) {
		t.Fatalf("blockDevice = %v, %v; want the disk 8:0", got, err)
	}
}

func TestV2StatsAndKill(t *testing.T) {
	k := newFakeKernel(t)
	p, own := newFakeParent(t, k)
	j, err := p.Create("job1", &jobletv1.Limits{}, "")
	must(t, err)
	dir := filepath.Join(own, "joblet", "job1")
	for name, content := range map[string]string{
		"cpu.stat":       "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
		"memory.stat":    "anon 1000\nfile 0\n",
		"memory.current": "4096\n",
		"memory.peak":    "67100000\n",
		"memory.events":  "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n",
	} {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	u, err := j.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := Usage{CPUTime: 1500 * time.Millisecond, MemoryPeakBytes: 67100000, OOMKills: 2}
	if u != want {
		t.Errorf("Stats = %+v, want %+v", u, want)
	}
	if err := j.KillAll(); err != nil {
		t.Fatalf("KillAll: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.kill")); string(b) != "1" {
		t.Errorf("cgroup.kill = %q, want 1", b)
	}
}

// A cgroup already removed (systemd prunes a scope with its last process)
// has nothing left to kill. (The ENODEV of a cgroup removed between the
// check and the write needs the real kernel: make vm-test.)
func TestV2KillRemovedCgroup(t *testing.T) {
	k := newFakeKernel(t)
	p, own := newFakeParent(t, k)
	j, err := p.Create("job1", &jobletv1.Limits{}, "")
	must(t, err)
	must(t, os.RemoveAll(filepath.Join(own, "joblet", "job1")))
	if ok, err := kill(filepath.Join(own, "joblet", "job1")); ok || err != nil {
		t.Errorf("kill of a removed cgroup = %v, %v; want false, nil", ok, err)
	}
	if err := j.KillAll(); err != nil {
		t.Errorf("KillAll of a removed cgroup: %v", err)
	}
}
