package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs/kind"
)

// A job with an IO limit cannot have its /work writes in memory (a tmpfs
// has no disk to throttle), so its /work is a disk of its own: an ext4
// image the size of the cap, a sparse file, on a loop device. The IO limit
// throttles the loop device, to which the job's own processes submit their
// IO; the cap is the filesystem's size and inode count, so a job that fills
// /work gets ENOSPC and the host's disk holds at most the image.
//
// The isolator makes the disk (NewWorkDisk) before the job's cgroup, whose
// IO rule names the loop device, and holds the device open until the job's
// init has mounted it (Storage.Disk, mountWork) in the job's own mount
// namespace; then it lets go (Close). The loop device is attached with
// LO_FLAGS_AUTOCLEAR and the image file is unlinked as soon as the device
// holds it, so when the job's mount namespace goes the device detaches
// itself and the image's blocks are freed: nothing is mounted on the host,
// and nothing is left after the job, even if the isolator dies meanwhile.

// reservedInodes are the inodes an ext4 filesystem uses before any file is
// written: the reserved ones (EXT4_GOOD_OLD_FIRST_INO) and the root.
const reservedInodes = 12

// WorkDisk is a job's /work filesystem, attached to a loop device.
type WorkDisk struct {
	dev *os.File // the loop device: open, it stays attached
}

// NewWorkDisk makes image (a new file) an ext4 filesystem holding the files
// of dir with room for s more bytes and inodes, owned as the job's root
// when u is set (the files of dir are given to it first, as Start does),
// and attaches it to a free loop device. Once attached, the image has no
// name left: the device holds it until the last user lets go. mkfs.ext4
// (e2fsprogs) must be installed.
func NewWorkDisk(image, dir string, s Storage, u *UserNS) (*WorkDisk, error) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return nil, kind.Errorf(kind.ErrFailedPrecondition,
			"an IO-limited job's /work needs mkfs.ext4 (the e2fsprogs package), which is not installed")
	}
	if s.MaxBytes <= 0 {
		return nil, fmt.Errorf("work disk: no size cap given")
	}
	if u != nil {
		if err := u.ownTree(dir); err != nil {
			return nil, fmt.Errorf("work disk: %w", err)
		}
	}
	usedBytes, usedInodes, err := usage(dir)
	if err != nil {
		return nil, fmt.Errorf("work disk: %w", err)
	}
	f, err := os.OpenFile(image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("work disk: %w", err)
	}
	defer f.Close()
	// Whatever happens below, the name goes: on success the loop device
	// holds the file, on failure nothing should.
	defer os.Remove(image)
	// Sparse: the host's disk holds only what is written.
	if err := f.Truncate(s.MaxBytes + usedBytes); err != nil {
		return nil, fmt.Errorf("work disk: size image: %w", err)
	}
	if out, err := exec.Command(mkfs, mkfsArgs(image, dir, s, usedInodes, u)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("work disk: mkfs.ext4: %w: %s", err, out)
	}
	dev, err := attachLoop(f)
	if err != nil {
		return nil, fmt.Errorf("work disk: %w", err)
	}
	return &WorkDisk{dev: dev}, nil
}

// mkfsArgs are the arguments of mkfs.ext4 for a /work image: no journal
// (the filesystem dies with the job, and a journal would take part of the
// cap) and no blocks reserved for root (the job may be root).
func mkfsArgs(image, dir string, s Storage, usedInodes int64, u *UserNS) []string {
	owner := "0:0"
	if u != nil {
		owner = fmt.Sprintf("%d:%d", u.HostUID, u.HostGID)
	}
	args := []string{"-q", "-m", "0", "-O", "^has_journal", "-E", "root_owner=" + owner, "-d", dir}
	if s.MaxInodes > 0 {
		args = append(args, "-N", strconv.FormatInt(s.MaxInodes+usedInodes+reservedInodes, 10))
	}
	return append(args, image)
}

// usage is what the files of dir take: bytes (in whole 4 KiB blocks, the
// most an ext4 block can be here) and inodes, the root not included.
func usage(dir string) (bytes, inodes int64, err error) {
	const block = 4096
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		inodes++
		bytes += (fi.Size() + block - 1) / block * block
		if d.IsDir() {
			bytes += block
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	return bytes, inodes, nil
}

// Path is the loop device's node, e.g. /dev/loop3: what the job's init
// mounts (Storage.Disk) and what the IO limit throttles.
func (d *WorkDisk) Path() string { return d.dev.Name() }

// Close lets go of the loop device. Once the job's init has mounted it,
// the mount holds it; otherwise it detaches now.
func (d *WorkDisk) Close() error { return d.dev.Close() }

// loopAttempts bounds the retries when another process takes the free
// loop device between our asking for it and configuring it.
const loopAttempts = 8

// attachLoop attaches backing to a free loop device that detaches itself
// when its last user closes it (LO_FLAGS_AUTOCLEAR), and returns the
// device, open.
func attachLoop(backing *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open loop control: %w", err)
	}
	defer ctl.Close()
	for range loopAttempts {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev, err := os.OpenFile("/dev/loop"+strconv.Itoa(n), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open loop device: %w", err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("configure %s: %w", dev.Name(), err)
		}
	}
	return nil, fmt.Errorf("no free loop device after %d attempts", loopAttempts)
}

// mountWorkDisk mounts the job's /work disk (a block device node, see
// WorkDisk) at target. mkfs.ext4's lost+found, the host root's, goes: the
// job's /work starts as its uploads alone.
func mountWorkDisk(disk, target string) error {
	var st unix.Stat_t
	if err := unix.Stat(disk, &st); err != nil {
		return setupErr("stat "+disk, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return setupErr("mount /work", fmt.Errorf("%s is not a block device", disk))
	}
	if err := mount(disk, target, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return err
	}
	// An uploaded lost+found with files in it stays.
	if err := unix.Rmdir(filepath.Join(target, "lost+found")); err != nil &&
		!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTEMPTY) {
		return setupErr("remove /work/lost+found", err)
	}
	return nil
}
