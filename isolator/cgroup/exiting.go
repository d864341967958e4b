package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pfExiting is the kernel's PF_EXITING task flag (include/linux/sched.h):
// set as a task enters do_exit, which it never leaves. Stable kernel ABI
// since 2.6 (the flags field of /proc/PID/stat).
const pfExiting = 0x4

// Running lists the processes of the job that can still run: those in its
// cgroup but for the ones whose every thread is exiting. A process that
// has begun to exit stays in its cgroup until its teardown is done (for a
// job's init, its namespaces and mounts: up to milliseconds of RCU grace
// periods), but can run nothing any more.
func (j *Job) Running() ([]int, error) {
	pids, err := j.Pids()
	if err != nil {
		return nil, fmt.Errorf("list processes of job %s: %w", j.id, err)
	}
	return running(pids)
}

// running returns the pids of pids that still have a thread not exiting.
func running(pids []int) ([]int, error) {
	var out []int
	for _, pid := range pids {
		ex, err := exiting(pid)
		if err != nil {
			return nil, err
		}
		if !ex {
			out = append(out, pid)
		}
	}
	return out, nil
}

// exiting reports whether every thread of process pid is exiting, or the
// process is gone.
func exiting(pid int) (bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tids, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("threads of pid %d: %w", pid, err)
	}
	for _, t := range tids {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/stat")
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // that thread is gone
		}
		if err != nil {
			return false, fmt.Errorf("stat of task %s/%s: %w", dir, t.Name(), err)
		}
		ex, err := statExiting(b)
		if err != nil {
			return false, fmt.Errorf("stat of task %s/%s: %w", dir, t.Name(), err)
		}
		if !ex {
			return false, nil
		}
	}
	return true, nil
}

// statExiting reads a /proc/PID/stat line: whether the task is exiting
// (PF_EXITING), a zombie or dead.
func statExiting(b []byte) (bool, error) {
	// The command (field 2) is in parentheses and may hold anything, ")"
	// and spaces included: the fields that follow start after the last ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false, errors.New("no command field")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is the state (field 3), f[6] the flags (field 9).
	if len(f) < 7 {
		return false, fmt.Errorf("%d fields after the command", len(f))
	}
	switch f[0][0] {
	case 'Z', 'X', 'x':
		return true, nil
	}
	flags, err := strconv.ParseUint(string(f[6]), 10, 64)
	if err != nil {
		return false, fmt.Errorf("flags: %w", err)
	}
	return flags&pfExiting != 0, nil
}
