package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// errNotCgroupfs is the error of a pid file not on a cgroup file system.
var errNotCgroupfs = errors.New("not a cgroup file")

// The isolator lists a job's processes several times per job (is anything
// left once its init is gone, before and after a kill, is the init in every
// hierarchy), 32 jobs at a time in a burst. The library's GetAllPids walks
// the cgroup's directory (a dirent for each of the controllers' dozens of
// files) and reads each cgroup.procs through a fresh 4 KiB bufio.Scanner:
// 13.5 of the 90 MiB the isolator allocated for 1000 jobs. These read the
// file through a buffer on the stack and look into the directory only when
// it has subdirectories.

// allPids lists the processes in the cgroup at dir and in its descendants,
// parents first, as cgroups.GetAllPids does. A descendant removed meanwhile
// is skipped; dir itself missing is an error that is os.ErrNotExist.
func allPids(dir string) ([]int, error) {
	return appendTree(nil, dir, true)
}

// cgroupPids lists the processes in the cgroup at dir alone.
func cgroupPids(dir string) ([]int, error) {
	return appendProcs(nil, dir)
}

func appendTree(pids []int, dir string, root bool) ([]int, error) {
	pids, err := appendProcs(pids, dir)
	if err == nil {
		pids, err = appendChildren(pids, dir)
	}
	if err != nil && !root && removed(err) {
		return pids, nil
	}
	return pids, err
}

// appendChildren appends the processes of dir's subdirectories' cgroups.
func appendChildren(pids []int, dir string) ([]int, error) {
	// cgroupfs (kernfs) counts a directory's subdirectories in its link
	// count, as most file systems do: 2 is none. Anything else is looked at.
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return pids, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if st.Nlink == 2 {
		return pids, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return pids, err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if pids, err = appendTree(pids, filepath.Join(dir, e.Name()), false); err != nil {
			return pids, err
		}
	}
	return pids, nil
}

// removed says whether err is that of a cgroup removed while being read.
func removed(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV)
}

// appendProcs appends the pids in dir's cgroup.procs, or in its
// cgroup.threads for a threaded cgroup (whose cgroup.procs cannot be read).
func appendProcs(pids []int, dir string) ([]int, error) {
	out, err := appendPidFile(pids, dir+"/cgroup.procs")
	if errors.Is(err, unix.ENOTSUP) {
		return appendPidFile(pids, dir+"/cgroup.threads")
	}
	return out, err
}

// appendPidFile appends the pids of a file of one decimal pid per line.
func appendPidFile(pids []int, path string) ([]int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return pids, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	// As the library does: a file that is not on a cgroup file system (a
	// mount over the hierarchy) is not read. Its unit tests' fake
	// hierarchies in temp dirs set cgroups.TestMode.
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return pids, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if !cgroups.TestMode && fs.Type != unix.CGROUP_SUPER_MAGIC && fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return pids, &os.PathError{Op: "open", Path: path, Err: errNotCgroupfs}
	}
	var buf [512]byte
	pid, digits := 0, 0
	for {
		n, err := unix.Read(fd, buf[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return pids, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		for _, c := range buf[:n] {
			switch {
			case c >= '0' && c <= '9' && digits < 10:
				pid = pid*10 + int(c-'0')
				digits++
			case c == '\n' && digits > 0:
				pids = append(pids, pid)
				pid, digits = 0, 0
			case c == '\n':
			default:
				return pids, fmt.Errorf("%s: not a list of pids", path)
			}
		}
	}
	if digits > 0 {
		pids = append(pids, pid)
	}
	return pids, nil
}
