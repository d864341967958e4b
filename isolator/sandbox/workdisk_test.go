package sandbox_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/sandbox"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// loopAttached reports whether the loop device at path (/dev/loopN) still
// has a backing file: a detached one has size 0.
func loopAttached(t *testing.T, path string) bool {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(path), "size"))
	if err != nil {
		return false // the device itself is gone
	}
	return strings.TrimSpace(string(b)) != "0"
}

// newWorkDisk makes a /work disk for spec's workspace with cap s, checks
// that the image has no name left, and checks at cleanup that the loop
// device detached itself.
func newWorkDisk(t *testing.T, spec sandbox.Spec, s sandbox.Storage) *sandbox.WorkDisk {
	t.Helper()
	image := filepath.Join(t.TempDir(), "work.img")
	d, err := sandbox.NewWorkDisk(image, spec.WorkDir, s, spec.UserNS)
	if err != nil {
		t.Fatalf("NewWorkDisk: %v", err)
	}
	dev := d.Path()
	t.Cleanup(func() {
		d.Close()
		waitFor(t, dev+" to detach itself", func() bool { return !loopAttached(t, dev) })
	})
	if _, err := os.Lstat(image); !os.IsNotExist(err) {
		t.Errorf("image %s still has its name once attached (%v)", image, err)
	}
	if !loopAttached(t, dev) {
		t.Fatalf("%s is not attached", dev)
	}
	return d
}

// An IO-limited job's /work: a disk of its own, capped in bytes and inodes
// (ENOSPC), holding the uploads with the job's root as owner, throttled by
// a real cgroup IO rule on its loop device; nothing is left on the host.
func TestWorkDisk(t *testing.T) {
	requiresRoot(t)
	before, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	const rate = 4 << 20 // bytes/s
	spec, marker := newSpec(t, "sh", "-c", `
		cat /work/uploaded
		stat -c '%u:%g' /work /work/uploaded
		test -e /work/lost+found && echo lost+found visible
		s=$(date +%s%N)
		dd if=/dev/zero of=/work/direct bs=1M count=12 oflag=direct 2>&1 | grep -c copied
		e=$(date +%s%N)
		echo direct ms $(( (e - s) / 1000000 ))
		rm -f /work/direct
		dd if=/dev/zero of=/work/big bs=1M count=64 2>&1 | grep -o 'No space left on device' | head -1
		rm -f /work/big
		i=0; while [ $i -lt 200 ] && touch /work/f$i 2>/dev/null; do i=$((i+1)); done; echo work files $i
		grep -c ' /work ' /proc/self/mountinfo`)
	spec.UserNS = &testUserNS
	if err := os.WriteFile(filepath.Join(spec.WorkDir, "uploaded"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	workCap := sandbox.Storage{MaxBytes: 16 << 20, MaxInodes: 64}
	disk := newWorkDisk(t, spec, workCap)
	spec.Work = workCap
	spec.Work.Disk = disk.Path()

	parent, err := cgroup.NewParent(zerolog.Nop(), cgroup.Options{Name: fmt.Sprintf("joblet-test-%d", os.Getpid()), Driver: cgroup.DriverCgroupfs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := parent.Remove(); err != nil {
			t.Errorf("remove parent cgroup: %v", err)
		}
	})
	cg, err := parent.Create("workdisk", &jobletv1.Limits{MaxIoBps: rate}, disk.Path())
	if err != nil {
		t.Fatalf("cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := cg.Destroy(); err != nil {
			t.Errorf("destroy cgroup: %v", err)
		}
	})
	spec.Cgroup = cg

	j, err := start(t, spec, marker)
	// As the isolator does: the job's mount holds the device from now on.
	disk.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	var ms, files int
	var mounts string
	out := j.stdout.String()
	want := fmt.Sprintf("from the host\n%d:%d\n%d:%d\n1\n", 0, 0, 0, 0)
	if !strings.HasPrefix(out, want) {
		t.Fatalf("output %q, want it to start with %q (the upload, owned by the job's root, no lost+found, dd done)", out, want)
	}
	rest := strings.TrimPrefix(out, want)
	if _, err := fmt.Sscanf(rest, "direct ms %d\nNo space left on device\nwork files %d\n%s\n", &ms, &files, &mounts); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	// 12 MiB at 4 MiB/s: 3 s; the kernel lets a first slice through.
	t.Logf("dd 12 MiB oflag=direct into /work under %d B/s: %d ms; %d files under a %d-inode cap", rate, ms, files, workCap.MaxInodes)
	if ms < 2000 {
		t.Errorf("dd oflag=direct of 12 MiB under 4 MiB/s took %d ms, want at least 2000", ms)
	}
	if files < int(workCap.MaxInodes)-4 || files > int(workCap.MaxInodes)+16 {
		t.Errorf("files created under a %d-inode cap: %d", workCap.MaxInodes, files)
	}
	if mounts != "1" {
		t.Errorf("/work mounts in the job: %s, want 1", mounts)
	}
	after, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("host mount table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The host's workspace is untouched: the job wrote to its disk.
	if entries, _ := os.ReadDir(spec.WorkDir); len(entries) != 1 {
		t.Errorf("host workspace after the job holds %d entries, want only the upload", len(entries))
	}
}

// Disks made at once get loop devices of their own (a device taken by
// another between LOOP_CTL_GET_FREE and LOOP_CONFIGURE is retried), and a
// disk whose job never mounts it (the start failed) detaches as soon as it
// is closed.
func TestWorkDiskUnused(t *testing.T) {
	requiresRoot(t)
	const n = 4
	disks, errs := make([]*sandbox.WorkDisk, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		image, dir := filepath.Join(t.TempDir(), "work.img"), t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			disks[i], errs[i] = sandbox.NewWorkDisk(image, dir, sandbox.Storage{MaxBytes: 1 << 20, MaxInodes: 16}, nil)
		}()
	}
	wg.Wait()
	for _, d := range disks {
		if d != nil {
			t.Cleanup(func() { d.Close() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("NewWorkDisk: %v", err)
	}
	seen := map[string]bool{}
	for _, d := range disks {
		if seen[d.Path()] {
			t.Errorf("two disks on %s", d.Path())
		}
		seen[d.Path()] = true
	}
	for _, d := range disks {
		d.Close()
		deadline := time.Now().Add(5 * time.Second)
		for loopAttached(t, d.Path()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still attached after Close", d.Path())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
