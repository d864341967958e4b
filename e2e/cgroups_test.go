package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// cgroupDirs returns the directory of pid's own cgroup in every mounted
// hierarchy (v1 controllers and, where mounted, the v2 unified tree).
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
		f, g := strings.Fields(pre), strings.Fields(post)
		if !found || len(f) < 5 || len(g) < 3 {
			continue
		}
		switch {
		case ctrls == "" && g[0] == "cgroup2":
			return f[4], f[3], true
		case ctrls != "" && g[0] == "cgroup" && hasAll(strings.Split(g[2], ","), strings.Split(ctrls, ",")):
			return f[4], f[3], true
		}
	}
	return "", "", false
}

func hasAll(opts, want []string) bool {
	for _, w := range want {
		found := false
		for _, o := range opts {
			found = found || o == w
		}
		if !found {
			return false
		}
	}
	return true
}

// jobCgroupDirs lists the directories directly in, or one level below, the
// given cgroup directories that are named after one of the job ids.
func jobCgroupDirs(bases []string, ids map[string]bool) []string {
	var out []string
	for _, base := range bases {
		for _, pattern := range []string{"*", "*/*"} {
			matches, _ := filepath.Glob(filepath.Join(base, pattern))
			for _, m := range matches {
				if fi, err := os.Stat(m); err == nil && fi.IsDir() && ids[filepath.Base(m)] {
					out = append(out, m)
				}
			}
		}
	}
	return out
}
