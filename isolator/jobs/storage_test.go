package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// fakeDisks records the /work disks the registry makes. A fake disk's
// Path is a file in dir, so that the fake cgroup finds it.
type fakeDisks struct {
	dir    string
	err    error // returned by Make
	mu     sync.Mutex
	made   []fakeDiskCall
	closed int
}

type fakeDiskCall struct {
	image, dir string
	s          Storage
	u          *UserNS
}

func (d *fakeDisks) Make(image, dir string, s Storage, u *UserNS) (WorkDisk, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.made = append(d.made, fakeDiskCall{image, dir, s, u})
	if d.err != nil {
		return nil, d.err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	p := filepath.Join(d.dir, "loop0")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return nil, err
	}
	return fakeDisk{d, p}, nil
}

type fakeDisk struct {
	d    *fakeDisks
	path string
}

func (k fakeDisk) Path() string { return k.path }

func (k fakeDisk) Close() error {
	k.d.mu.Lock()
	k.d.closed++
	k.d.mu.Unlock()
	return nil
}

func TestStorageCapsReachTheRunner(t *testing.T) {
	runner := &specRunner{}
	disks := &fakeDisks{dir: t.TempDir()}
	work, tmp := Storage{MaxBytes: 1 << 20, MaxInodes: 100}, Storage{MaxBytes: 2 << 20, MaxInodes: 200}
	userNS := &UserNS{HostUID: 100000, HostGID: 100000, Size: 65536}
	f := newFixture(t, func(o *Options) {
		o.Runner, o.Workspace, o.Tmp, o.WorkDisks, o.UserNS = runner, work, tmp, disks, userNS
	})

	f.wait(f.run("true").GetId())
	if s := runner.last(); s.Work != work || s.Tmp != tmp || s.WorkDir != emptyWork(f.dir) || s.RootDir != mountPoint(f.dir) {
		t.Errorf("runner got /work cap %+v and /tmp cap %+v in %s on %s, want %+v and %+v in %s on %s",
			s.Work, s.Tmp, s.WorkDir, s.RootDir, work, tmp, emptyWork(f.dir), mountPoint(f.dir))
	}
	if len(disks.made) != 0 {
		t.Errorf("a job without an IO limit got a /work disk: %+v", disks.made)
	}
	// An IO limit needs a disk to throttle: /work is a disk of its own,
	// with the same cap, and the limit throttles that disk.
	j, err := runWith(t, f, &jobletv1.Limits{MaxIoBps: 1 << 20}, "true")
	if err != nil {
		t.Fatal(err)
	}
	f.wait(j.GetId())
	id := j.GetId()
	wantDisk := work
	wantDisk.Disk = filepath.Join(disks.dir, "loop0")
	if s := runner.last(); s.Work != wantDisk || s.Tmp != tmp {
		t.Errorf("with an IO limit: /work cap %+v and /tmp cap %+v, want %+v and %+v", s.Work, s.Tmp, wantDisk, tmp)
	}
	want := fakeDiskCall{filepath.Join(f.dir, "work", id+".img"), filepath.Join(f.dir, "work", id), work, userNS}
	if len(disks.made) != 1 || disks.made[0] != want {
		t.Errorf("disks made %+v, want one %+v", disks.made, want)
	}
	if disks.closed != 1 {
		t.Errorf("disk closed %d times after the start, want once", disks.closed)
	}
	f.cg.mu.Lock()
	devices := f.cg.devices
	f.cg.mu.Unlock()
	// The first job brought no files: its /work is an overlay over the
	// empty workspace every such job shares.
	if wantDevices := []string{emptyWork(f.dir), wantDisk.Disk}; !slices.Equal(devices, wantDevices) {
		t.Errorf("cgroups created for IO devices %q, want %q", devices, wantDevices)
	}
}

// A /work disk that cannot be made fails the job before its cgroup, and
// leaves nothing.
func TestWorkDiskFailure(t *testing.T) {
	disks := &fakeDisks{dir: t.TempDir(), err: errors.New("no loop device")}
	f := newFixture(t, func(o *Options) { o.Workspace, o.WorkDisks = Storage{MaxBytes: 1 << 20}, disks })
	j, err := runWith(t, f, &jobletv1.Limits{MaxIoBps: 1 << 20}, "true")
	if err == nil {
		t.Fatalf("job started without its /work disk: %v", j)
	}
	jobs, _ := f.reg.List(context.Background())
	if len(jobs) != 1 || jobs[0].GetState() != jobletv1.JobState_JOB_STATE_FAILED {
		t.Fatalf("records %v, want one FAILED job", jobs)
	}
	f.assertNoDirs(jobs[0].GetId())
	if len(f.cg.events) != 0 {
		t.Errorf("cgroup events %v, want none", f.cg.events)
	}
}

// Without WorkDisks, an IO limit cannot be given with a /work cap: the
// request is refused and leaves nothing.
func TestIOLimitWithoutWorkDisks(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Workspace = Storage{MaxBytes: 1 << 20} })
	if _, err := runWith(t, f, &jobletv1.Limits{MaxIoBps: 1 << 20}, "true"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("IO limit without WorkDisks: err %v, want failed precondition", err)
	}
	if jobs, _ := f.reg.List(context.Background()); len(jobs) != 0 {
		t.Errorf("refused request made records: %v", jobs)
	}
}
