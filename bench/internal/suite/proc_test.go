package suite

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestCgroupMount(t *testing.T) {
	mi := "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n" +
		"31 25 0:27 /sub /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
		"32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
	cases := []struct{ ctrls, mnt, root string }{
		{"cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/"},
		{"cpuacct,cpu", "/sys/fs/cgroup/cpu,cpuacct", "/"},
		{"memory", "/sys/fs/cgroup/memory", "/sub"},
		{"", "/sys/fs/cgroup/unified", "/"},
	}
	for _, c := range cases {
		mnt, root, ok := cgroupMount(mi, c.ctrls)
		if !ok || mnt != c.mnt || root != c.root {
			t.Errorf("cgroupMount(%q) = %q, %q, %v; want %q, %q", c.ctrls, mnt, root, ok, c.mnt, c.root)
		}
	}
	if _, _, ok := cgroupMount(mi, "pids"); ok {
		t.Error("cgroupMount found a pids hierarchy that is not mounted")
	}
}

func TestMemoryOfSelf(t *testing.T) {
	m, err := MemoryOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.PSS <= 0 || m.PSS > m.RSS {
		t.Errorf("own memory = %+v: want 0 < PSS <= RSS", m)
	}
	if _, err := MemoryOf(-1); err == nil {
		t.Error("MemoryOf(-1) gave no error")
	}
}

func TestChildrenAndDescendants(t *testing.T) {
	// sh, with a sleep as its child (a plain `sleep` would be exec'd in place).
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range Descendants(cmd.Process.Pid) {
			_ = syscallKill(d)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var kids []int
	for range 100 {
		if kids = Descendants(os.Getpid()); slices.Contains(kids, cmd.Process.Pid) && len(Children(cmd.Process.Pid)) == 1 {
			break
		}
		sleepBriefly()
	}
	if !slices.Contains(Children(os.Getpid()), cmd.Process.Pid) {
		t.Fatalf("Children(self) = %v lacks the shell %d", Children(os.Getpid()), cmd.Process.Pid)
	}
	grand := Children(cmd.Process.Pid)
	if len(grand) != 1 || !slices.Contains(kids, grand[0]) {
		t.Errorf("the shell's children %v should be one process among our descendants %v", grand, kids)
	}
	if !alive(cmd.Process.Pid) {
		t.Error("alive(shell) = false")
	}
}
