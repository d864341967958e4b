package shimproc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/shim/wire"
)

// jobCgroup is the job's cgroup as its shim uses it: the isolator made it
// (package cgroup, with opencontainers/cgroups) and removes it; the shim
// only puts the job's init in it and reads three counters at the job's
// end. That is a handful of files, read and written here directly: the
// library (and package cgroup around it) links logrus, D-Bus and gRPC's
// error types, which cost the shim, one per running job, about 8 MiB of
// resident memory (measured: a shim linking package cgroup, 10.0 MiB RSS
// at rest; the library's base package alone, 3.2; neither, 2.3). The
// counters are read as the library reads them; a test compares the two.
type jobCgroup struct {
	id    string
	paths map[string]string // by controller; the one key "" on cgroup v2

	mu sync.Mutex
	fd *os.File // the v2 directory, open for CLONE_INTO_CGROUP
}

func openJobCgroup(id string, paths map[string]string) (*jobCgroup, error) {
	for c, d := range paths {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("cgroup of job %s: %q directory %q is not absolute", id, c, d)
		}
	}
	return &jobCgroup{id: id, paths: paths}, nil
}

// v2dir is the job's directory on cgroup v2, "" on v1.
func (j *jobCgroup) v2dir() string {
	if d, ok := j.paths[""]; ok && len(j.paths) == 1 {
		return d
	}
	return ""
}

// dirs are the job's directories, each once: controllers mounted together
// (cpu,cpuacct) share one.
func (j *jobCgroup) dirs() []string {
	var ds []string
	for _, d := range j.paths {
		if !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	slices.Sort(ds)
	return ds
}

// UseCgroupFD implements sandbox.Cgroup: on cgroup v2 the init is born in
// the job's cgroup (clone3 CLONE_INTO_CGROUP).
func (j *jobCgroup) UseCgroupFD(attr *syscall.SysProcAttr) (bool, error) {
	dir := j.v2dir()
	if dir == "" {
		return false, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fd == nil {
		f, err := os.OpenFile(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Errorf("open job cgroup: %w", err)
		}
		j.fd = f
	}
	attr.UseCgroupFD = true
	attr.CgroupFD = int(j.fd.Fd())
	return true, nil
}

// Apply implements sandbox.Cgroup: it moves process pid into the job's
// cgroup in every hierarchy, writing each directory once.
func (j *jobCgroup) Apply(pid int) error {
	for _, d := range j.dirs() {
		if err := writeProc(d, pid); err != nil {
			return fmt.Errorf("move pid %d into cgroup of job %s: %w", pid, j.id, err)
		}
	}
	return nil
}

// writeProc writes pid to dir's cgroup.procs. EINVAL may mean the process
// is still being created (TASK_NEW): the write is tried again, as the
// library does.
func writeProc(dir string, pid int) error {
	f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for range 5 {
		if _, err = f.WriteString(strconv.Itoa(pid)); !errors.Is(err, unix.EINVAL) {
			return err
		}
		time.Sleep(30 * time.Millisecond)
	}
	return err
}

// Holds implements sandbox.Holder: whether pid is listed in the job's
// cgroup.procs in every hierarchy.
func (j *jobCgroup) Holds(pid int) (bool, error) {
	want := []byte(strconv.Itoa(pid))
	for _, d := range j.dirs() {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			return false, fmt.Errorf("processes of job %s: %w", j.id, err)
		}
		if !slices.ContainsFunc(bytes.Fields(b), func(f []byte) bool { return bytes.Equal(f, want) }) {
			return false, nil
		}
	}
	return true, nil
}

// stats reads what the job used: on v2 cpu.stat usage_usec, memory.peak
// (none before Linux 5.19: 0) and memory.events oom_kill; on v1
// cpuacct.usage, memory.max_usage_in_bytes and memory.oom_control
// oom_kill.
func (j *jobCgroup) stats() (wire.Usage, error) {
	var u wire.Usage
	if dir := j.v2dir(); dir != "" {
		usec, err := keyedValue(dir, "cpu.stat", "usage_usec")
		if err != nil {
			return u, err
		}
		u.CPUTime = time.Duration(usec) * time.Microsecond
		if u.MemoryPeakBytes, err = value(dir, "memory.peak"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return u, err
		}
		u.OOMKills, err = keyedValue(dir, "memory.events", "oom_kill")
		return u, err
	}
	ns, err := value(j.paths["cpuacct"], "cpuacct.usage")
	if err != nil {
		return u, err
	}
	u.CPUTime = time.Duration(ns)
	mem := j.paths["memory"]
	if u.MemoryPeakBytes, err = value(mem, "memory.max_usage_in_bytes"); err != nil {
		return u, err
	}
	u.OOMKills, err = keyedValue(mem, "memory.oom_control", "oom_kill")
	return u, err
}

// value reads a file of dir that holds one number.
func value(dir, file string) (uint64, error) {
	if dir == "" {
		return 0, fmt.Errorf("no cgroup directory for %s", file)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return v, nil
}

// keyedValue reads the number after key in a file of "key value" lines.
func keyedValue(dir, file, key string) (uint64, error) {
	if dir == "" {
		return 0, fmt.Errorf("no cgroup directory for %s", file)
	}
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %s: %w", file, key, err)
			}
			return n, nil
		}
	}
	// Absent (an older kernel's file): none counted, as the library says.
	return 0, sc.Err()
}
