package integration

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// v1All are the hierarchies the parent cgroup exists in on cgroup v1.
var v1All = []string{"cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer"}

// cgroupsOf maps each v1 controller to pid's cgroup (/proc/<pid>/cgroup).
func cgroupsOf(t *testing.T, pid string) map[string]string {
	t.Helper()
	m, err := cgroups.ParseCgroupFile(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// jobDirs lists the directories named id under this run's parent in every
// v1 hierarchy: what exists of a job's cgroup.
func jobDirs(t *testing.T, id string) []string {
	t.Helper()
	var dirs []string
	own := cgroupsOf(t, "self")
	for _, c := range v1All {
		dir := filepath.Join("/sys/fs/cgroup", c, own[c], name, id)
		if _, err := os.Stat(dir); err == nil {
			dirs = append(dirs, c)
		}
	}
	return dirs
}

// TestJobJoinsOnlyTheHierarchiesItNeeds checks on the real kernel which v1
// hierarchies a job joins: memory, pids, cpuacct and freezer always, cpu,
// cpuset and blkio only with a limit of theirs; elsewhere the job's process
// stays in its parent's cgroup. Each job is then found again as a restarted
// isolator would (Open), measured, signalled, killed and removed.
func TestJobJoinsOnlyTheHierarchiesItNeeds(t *testing.T) {
	p := requireRoot(t)
	if p.Version() != 1 {
		t.Skip("checks cgroup v1 hierarchies; this host is v2")
	}
	always := []string{"cpuacct", "freezer", "memory", "pids"}
	for _, c := range []struct {
		name  string
		l     *jobletv1.Limits
		extra []string
		file  string // a limit file read back in extra[0]
		want  string
	}{
		{name: "default", l: &jobletv1.Limits{MaxPids: 1024}},
		{name: "memory", l: &jobletv1.Limits{MaxPids: 1024, MaxMemoryMb: 64}},
		{name: "max-cpu", l: &jobletv1.Limits{MaxPids: 1024, MaxCpuPercent: 50}, extra: []string{"cpu"}, file: "cpu.cfs_quota_us", want: "50000"},
		{name: "cpu-cores", l: &jobletv1.Limits{MaxPids: 1024, CpuCores: "0"}, extra: []string{"cpuset"}, file: "cpuset.cpus", want: "0"},
		{name: "max-iobps", l: &jobletv1.Limits{MaxPids: 1024, MaxIoBps: 10485760}, extra: []string{"blkio"}, file: "blkio.throttle.write_bps_device", want: " 10485760"},
		{name: "all", l: &jobletv1.Limits{MaxPids: 1024, MaxCpuPercent: 50, CpuCores: "0", MaxIoBps: 10485760}, extra: []string{"blkio", "cpu", "cpuset"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "hier-" + c.name
			j, err := p.Create(id, c.l, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = j.Destroy() })
			want := slices.Sorted(slices.Values(append(slices.Clone(always), c.extra...)))
			if got := slices.Sorted(maps.Keys(j.Paths())); !slices.Equal(got, want) {
				t.Fatalf("Paths has %v, want %v", got, want)
			}
			if got := jobDirs(t, id); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
				t.Fatalf("the job has directories in %v, want exactly %v", got, want)
			}
			if c.file != "" {
				if got := read(t, j.Paths()[c.extra[0]], c.file); !strings.HasSuffix(got, c.want) || got == "" {
					t.Errorf("%s = %q, want it to end in %q", c.file, got, c.want)
				}
			}

			// The process is in the job's cgroup where the job joined,
			// in its parent's (this test's) cgroup elsewhere.
			// The shell holds a 1 MB string so memory use shows.
			proc := start(t, j, "x=$(head -c 1000000 /dev/zero | tr '\\0' a); while :; do :; done")
			pid := fmt.Sprint(proc.cmd.Process.Pid)
			in, self := cgroupsOf(t, pid), cgroupsOf(t, "self")
			for _, ctrl := range v1All {
				joined := slices.Contains(want, ctrl)
				if joined && !strings.HasSuffix(in[ctrl], "/"+name+"/"+id) {
					t.Errorf("%s: the job's process is in %q, want its own cgroup", ctrl, in[ctrl])
				}
				if !joined && in[ctrl] != self[ctrl] {
					t.Errorf("%s: the job's process is in %q, want its parent's %q", ctrl, in[ctrl], self[ctrl])
				}
			}

			// A restarted isolator finds exactly these directories.
			again, err := p.Open(id)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(again.Paths())); !slices.Equal(got, want) {
				t.Fatalf("Open found %v, want %v", got, want)
			}
			time.Sleep(100 * time.Millisecond)
			u, err := again.Stats()
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if u.CPUTime <= 0 || u.MemoryPeakBytes == 0 {
				t.Errorf("Stats = %+v, want CPU time and peak memory", u)
			}
			if pids, err := again.Pids(); err != nil || !slices.Contains(pids, proc.cmd.Process.Pid) {
				t.Errorf("Pids = %v, %v; want the job's process %d", pids, err, proc.cmd.Process.Pid)
			}
			if err := again.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("Signal: %v", err)
			}
			if err := proc.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "terminated") {
				t.Errorf("the job's process ended with %v, want terminated", err)
			}
			if err := again.KillAll(); err != nil {
				t.Fatalf("KillAll: %v", err)
			}
			if err := again.Destroy(); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			if left := jobDirs(t, id); len(left) > 0 {
				t.Errorf("after Destroy the job still has directories in %v", left)
			}
		})
	}
}

// TestCleanupFindsJobsWithAndWithoutOptionalHierarchies: a restarted
// isolator's Cleanup kills and removes jobs whether or not they joined cpu,
// cpuset and blkio.
func TestCleanupFindsJobsWithAndWithoutOptionalHierarchies(t *testing.T) {
	p := requireRoot(t)
	if p.Version() != 1 {
		t.Skip("checks cgroup v1 hierarchies; this host is v2")
	}
	var procs []*proc
	for id, l := range map[string]*jobletv1.Limits{
		"stale-default": {MaxPids: 1024},
		"stale-all":     {MaxPids: 1024, MaxCpuPercent: 50, CpuCores: "0", MaxIoBps: 10485760},
	} {
		j, err := p.Create(id, l, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = j.Destroy() })
		procs = append(procs, start(t, j, "sleep 100"))
	}
	again, err := cgroup.NewParent(zerolog.New(zerolog.NewTestWriter(t)), cgroup.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	for _, pr := range procs {
		if err := pr.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("stale job's process ended with %v, want killed", err)
		}
	}
	for _, id := range []string{"stale-default", "stale-all"} {
		if left := jobDirs(t, id); len(left) > 0 {
			t.Errorf("job %s still has directories in %v", id, left)
		}
	}
}
