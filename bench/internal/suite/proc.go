package suite

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Memory is a process's resident memory in bytes: RSS counts every page
// mapped in, PSS divides shared pages among the processes sharing them.
// Threads is its count of threads: a Go service keeps every thread it
// made, and each keeps its stacks resident.
type Memory struct {
	RSS     int64
	PSS     int64
	Threads int
}

// MemoryOf reads a process's RSS and PSS from /proc/PID/smaps_rollup.
func MemoryOf(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.RSS = kb << 10
		case "Pss:":
			m.PSS = kb << 10
		}
	}
	if ts, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		m.Threads = len(ts)
	}
	return m, nil
}

// Children lists the live children of pid, from /proc/PID/task/*/children.
func Children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Descendants lists every live descendant of pid.
func Descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		c := Children(queue[0])
		queue = append(queue[1:], c...)
		out = append(out, c...)
	}
	return out
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return string(bytes.TrimSpace(b))
}

func allPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// alive says whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] != 'Z'
}

// mountsMentioning lists the lines of this namespace's mountinfo that name dir.
func mountsMentioning(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, dir) {
			out = append(out, line)
		}
	}
	return out, nil
}

// cgroupDirs lists the directories of pid's cgroups in every hierarchy
// mounted here.
func cgroupDirs(pid int) ([]string, error) {
	own, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, fmt.Errorf("cgroups of pid %d: %w", pid, err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var dirs []string
	for _, line := range strings.Split(strings.TrimSpace(string(own)), "\n") {
		// "hierarchy-id:controllers:path"; controllers is empty for v2.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if mnt, root, ok := cgroupMount(string(mi), parts[1]); ok {
			rel, err := filepath.Rel(root, parts[2])
			if err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			dirs = append(dirs, filepath.Join(mnt, rel))
		}
	}
	return dirs, nil
}

// cgroupMount finds the mount point and root of the hierarchy whose
// controllers are ctrls ("cpu,cpuacct", "name=systemd", or "" for v2).
func cgroupMount(mountinfo, ctrls string) (mnt, root string, ok bool) {
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, found := strings.Cut(line, " - ")
		if !found {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(pf) < 3 {
			continue
		}
		switch {
		case ctrls == "" && pf[0] == "cgroup2":
			return f[4], f[3], true
		case ctrls != "" && pf[0] == "cgroup" && sameControllers(pf[2], ctrls):
			return f[4], f[3], true
		}
	}
	return "", "", false
}

// sameControllers says whether the super options of a v1 mount name exactly
// the controllers ctrls.
func sameControllers(superOpts, ctrls string) bool {
	want := map[string]bool{}
	for _, c := range strings.Split(ctrls, ",") {
		want[c] = true
	}
	n := 0
	for _, o := range strings.Split(superOpts, ",") {
		if want[o] {
			n++
		}
	}
	return n == len(want)
}
