package cgroup

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// hostBlockNode finds a block device node in /dev (a loop device, a
// disk) to stand for a job's /work disk: only its number is used.
func hostBlockNode(t *testing.T) (string, device) {
	entries, _ := os.ReadDir("/dev")
	for _, e := range entries {
		p := filepath.Join("/dev", e.Name())
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			return p, device{int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))}
		}
	}
	t.Skip("no block device node in /dev")
	return "", device{}
}

// fakeSysDevBlock makes a /sys/dev/block in which dev is a whole disk.
func fakeSysDevBlock(t *testing.T, dev device) string {
	sys := t.TempDir()
	node := filepath.Join(sys, "devices", "loop")
	must(t, os.MkdirAll(node, 0o755))
	must(t, os.WriteFile(filepath.Join(node, "dev"), []byte(dev.String()+"\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(sys, "dev", "block"), 0o755))
	must(t, os.Symlink(node, filepath.Join(sys, "dev", "block", dev.String())))
	return filepath.Join(sys, "dev", "block")
}

// A block device node (an IO-limited job's /work disk) is throttled
// itself, not the disk its node lives on (devtmpfs, which has none).
func TestBlockDeviceNode(t *testing.T) {
	path, want := hostBlockNode(t)
	got, err := blockDevice(fakeSysDevBlock(t, want), path)
	if err != nil || got != want {
		t.Fatalf("blockDevice(%s) = %v, %v; want %v", path, got, err, want)
	}
}

// On cgroup v2 the IO limit of a job whose /work is a loop device is one
// io.max line for that device.
func TestV2IOLimitOnWorkDisk(t *testing.T) {
	path, dev := hostBlockNode(t)
	k := newFakeKernel(t)
	p, own := newFakeParent(t, k)
	p.sysDevBlock = fakeSysDevBlock(t, dev)
	if _, err := p.Create("job1", &jobletv1.Limits{MaxIoBps: 10485760}, path); err != nil {
		t.Fatalf("Create: %v", err)
	}
	got := k.changed(filepath.Join(own, "joblet", "job1"))
	if want := dev.String() + " rbps=10485760 wbps=10485760"; got["io.max"] != want {
		t.Errorf("io.max = %q, want %q (files written: %v)", got["io.max"], want, got)
	}
}
