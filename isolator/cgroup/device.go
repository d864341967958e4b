package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// device is a block device number, as the io and blkio controllers key it.
type device struct{ major, minor int64 }

func (d device) String() string { return fmt.Sprintf("%d:%d", d.major, d.minor) }

// blockDevice finds the disk to throttle for path, for IO throttling: the
// device itself when path is a block device node (a job's /work disk, a
// loop device), else the disk that backs the directory path. The kernel
// throttles whole disks only (a partition is rejected with ENODEV), so a
// partition is mapped to its disk. A directory on a filesystem without a
// block device of its own (tmpfs, overlayfs, btrfs subvolumes: an anonymous
// 0:N device) cannot be throttled, which is a clear error rather than a
// silently unlimited job. sysDevBlock is /sys/dev/block, or a fake in tests.
func blockDevice(sysDevBlock, path string) (device, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return device{}, fmt.Errorf("stat %s: %w", path, err)
	}
	num := st.Dev
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		num = st.Rdev
	}
	dev := device{int64(unix.Major(num)), int64(unix.Minor(num))}
	node, err := filepath.EvalSymlinks(filepath.Join(sysDevBlock, dev.String()))
	if err != nil {
		return device{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"--max-iobps: the job's files are not on a block device (device %s), so IO cannot be limited", dev)
	}
	if _, err := os.Stat(filepath.Join(node, "partition")); err != nil {
		return dev, nil
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(node), "dev"))
	if err != nil {
		return device{}, fmt.Errorf("find the disk of partition %s: %w", dev, err)
	}
	return parseDevice(strings.TrimSpace(string(b)))
}

// parseDevice parses "MAJ:MIN".
func parseDevice(s string) (device, error) {
	maj, min, ok := strings.Cut(s, ":")
	a, err1 := strconv.ParseInt(maj, 10, 64)
	b, err2 := strconv.ParseInt(min, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return device{}, fmt.Errorf("bad device number %q", s)
	}
	return device{a, b}, nil
}
