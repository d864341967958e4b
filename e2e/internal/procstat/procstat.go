// Package procstat reads what the reliability tests count about a process
// and about the machine from /proc and /sys: open file descriptors,
// threads, resident memory, mounts. It only reads; it never changes state.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Proc is what is counted of one process.
type Proc struct {
	FDs     int   // entries in /proc/PID/fd
	Threads int   // Threads: in /proc/PID/status (a Go process's goroutines run on these)
	RSSKiB  int64 // VmRSS: in /proc/PID/status
	PPid    int   // PPid: in /proc/PID/status
}

// Read counts pid's fds, threads and resident memory, and gives its parent.
func Read(pid int) (Proc, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return Proc{}, fmt.Errorf("fds of pid %d: %w", pid, err)
	}
	st, err := status(pid)
	if err != nil {
		return Proc{}, err
	}
	p := Proc{FDs: len(fds)}
	if p.Threads, err = strconv.Atoi(st["Threads"]); err != nil {
		return Proc{}, fmt.Errorf("pid %d: Threads %q: %w", pid, st["Threads"], err)
	}
	if p.PPid, err = strconv.Atoi(st["PPid"]); err != nil {
		return Proc{}, fmt.Errorf("pid %d: PPid %q: %w", pid, st["PPid"], err)
	}
	rss := strings.TrimSuffix(st["VmRSS"], " kB")
	if p.RSSKiB, err = strconv.ParseInt(strings.TrimSpace(rss), 10, 64); err != nil {
		return Proc{}, fmt.Errorf("pid %d: VmRSS %q: %w", pid, st["VmRSS"], err)
	}
	return p, nil
}

// status parses /proc/PID/status into key → trimmed value.
func status(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("status of pid %d: %w", pid, err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, sc.Err()
}

// MountsMentioning counts the lines of /proc/PID/mountinfo that contain
// every one of words (a dev dir, say): the mounts made for something and
// left behind show up here.
func MountsMentioning(pid int, words ...string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return 0, fmt.Errorf("mountinfo of pid %d: %w", pid, err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		all := line != ""
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			n++
		}
	}
	return n, nil
}

// Subdirs counts the directories below root (root itself excluded), at
// any depth: the cgroups under a parent cgroup.
func Subdirs(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p != root {
				return nil // removed while walking
			}
			return err
		}
		if d.IsDir() && p != root {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("walk %s: %w", root, err)
	}
	return n, nil
}
