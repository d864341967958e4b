package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// v1Hierarchies are the cgroup v1 hierarchies every job joins; v1Optional
// are joined only by a job with a limit of theirs (--max-cpu, --cpu-cores,
// --max-iobps).
var (
	v1Hierarchies = []string{"cpuacct", "memory", "pids", "freezer"}
	v1Optional    = []string{"cpu", "cpuset", "blkio"}
)

func (s *suite) runLimited(l *jobletv1.Limits, cmd string, args ...string) *jobletv1.Job {
	s.t.Helper()
	j, err := s.client.Run(context.Background(), &jobletv1.JobSpec{Command: cmd, Args: args, Limits: l})
	if err != nil {
		s.t.Fatalf("run %s with %v: %v", cmd, l, err)
	}
	return j
}

// cgroupDirs finds the directories named name in every mounted cgroup
// hierarchy: the parents of this isolator's job cgroups.
func cgroupDirs(t *testing.T, name string) []string {
	t.Helper()
	var found []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if d.Name() == name {
				found = append(found, p)
				return filepath.SkipDir
			}
			// The isolator's own cgroup is at most a few levels down.
			if strings.Count(strings.TrimPrefix(p, root), "/") >= 4 {
				return filepath.SkipDir
			}
			return nil
		})
	}
	return found
}

// jobCgroupsLeft lists the job cgroups under the isolator's parent cgroup.
func jobCgroupsLeft(t *testing.T, name string) []string {
	t.Helper()
	var left []string
	for _, dir := range cgroupDirs(t, name) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			// A waiting shim's spare (see cgroup.Spare) is no job's.
			if e.IsDir() && !strings.HasPrefix(e.Name(), "_spare-") {
				left = append(left, filepath.Join(dir, e.Name()))
			}
		}
	}
	return left
}

// cgroupOf maps each v1 controller to the cgroup of pid, from
// /proc/<pid>/cgroup.
func cgroupOf(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	return parseCgroupFile(string(b))
}

func parseCgroupFile(text string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for c := range strings.SplitSeq(f[1], ",") {
			out[c] = f[2]
		}
	}
	return out
}

func readCgroupFile(t *testing.T, controller, cg, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, cg, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func requiresCgroupV1(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skip("skipping: these checks read cgroup v1 files (this host has no v1 memory hierarchy)")
	}
}

func TestLimitsEnforced(t *testing.T) {
	cfg := testConfig(t)
	requiresCgroupV1(t)
	s := startSuite(t, cfg)
	name := cgroupName(cfg)
	ctx := context.Background()

	t.Run("in its cgroup from its first instruction", func(t *testing.T) {
		// The job's first process reads where it is: the job's own cgroup
		// under this isolator's parent in every hierarchy a job always
		// joins. A job started from a waiting shim's spare cgroup has its
		// own in the others too (unlimited there); one made anew (no shim
		// waited, e.g. right after the previous start) is its shim's there.
		j, out := s.ended(s.run("cat", "/proc/self/cgroup").GetId())
		got := parseCgroupFile(out)
		want := "/" + name + "/" + j.GetId()
		for _, c := range v1Hierarchies {
			if !strings.HasSuffix(got[c], want) {
				t.Errorf("%s cgroup of the job is %q, want it to end in %q", c, got[c], want)
			}
		}
		for _, c := range v1Optional {
			if got[c] == "" || strings.Contains(got[c], "/"+name+"/") && !strings.HasSuffix(got[c], want) {
				t.Errorf("%s cgroup of a job without a %s limit is %q, want its own or its shim's", c, c, got[c])
			}
		}
	})

	t.Run("limits written", func(t *testing.T) {
		l := &jobletv1.Limits{MaxCpuPercent: 50, MaxMemoryMb: 64, CpuCores: "1", MaxPids: 64, MaxIoBps: 10485760}
		j := s.runLimited(l, "sleep", "1000")
		cg := cgroupOf(t, s.initPID(j.GetId()))
		for _, c := range append(v1Optional, v1Hierarchies...) {
			if want := "/" + name + "/" + j.GetId(); !strings.HasSuffix(cg[c], want) {
				t.Errorf("%s cgroup of a job with every limit is %q, want it to end in %q", c, cg[c], want)
			}
		}
		for _, c := range []struct{ controller, file, want string }{
			{"cpu", "cpu.cfs_quota_us", "50000"},
			{"cpu", "cpu.cfs_period_us", "100000"},
			{"memory", "memory.limit_in_bytes", strconv.Itoa(64 << 20)},
			{"cpuset", "cpuset.cpus", "1"},
			{"pids", "pids.max", "64"},
		} {
			if got := readCgroupFile(t, c.controller, cg[c.controller], c.file); got != c.want {
				t.Errorf("%s = %q, want %q", c.file, got, c.want)
			}
		}
		for _, f := range []string{"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"} {
			if got := readCgroupFile(t, "blkio", cg["blkio"], f); !strings.HasSuffix(got, " 10485760") {
				t.Errorf("%s = %q, want a device at 10485760", f, got)
			}
		}
		r, err := s.client.Stop(ctx, j.GetId())
		if err != nil || r.GetState() != jobletv1.JobState_JOB_STATE_STOPPED {
			t.Fatalf("stop: %v %v", r, err)
		}
		if r.GetLimits().String() != l.String() {
			t.Errorf("recorded limits %v, want %v", r.GetLimits(), l)
		}
		// Removed just after the job's end is recorded.
		dir := filepath.Join("/sys/fs/cgroup/memory", cg["memory"])
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			_, err := os.Stat(dir)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the stopped job's cgroup is still there (%v)", err)
				break
			}
		}
	})

	t.Run("OOM", func(t *testing.T) {
		j, _ := s.ended(s.runLimited(&jobletv1.Limits{MaxMemoryMb: 64}, "python3", "-c", "b = bytearray(200 * 1024 * 1024)").GetId())
		u := j.GetUsage()
		if j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetReason() != "out of memory: killed by the kernel (limit 64 MB)" ||
			u.GetOomKills() < 1 || u.GetMemoryPeakBytes() > 64<<20 {
			t.Fatalf("record %v", j)
		}
		t.Logf("usage: %v", u)
		// The isolator is untouched: the next job runs.
		if j, out := s.ended(s.run("echo", "fine").GetId()); j.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED || out != "fine\n" {
			t.Fatalf("job after the OOM kill: %v %q", j, out)
		}
	})

	t.Run("usage", func(t *testing.T) {
		start := time.Now()
		j, _ := s.ended(s.runLimited(&jobletv1.Limits{MaxCpuPercent: 25}, "timeout", "2", "sh", "-c", "while :; do :; done").GetId())
		wall := time.Since(start)
		cpu := time.Duration(j.GetUsage().GetCpuTimeUsec()) * time.Microsecond
		t.Logf("busy loop under --max-cpu=25: %v CPU in %v", cpu, wall.Round(time.Millisecond))
		if cpu < 100*time.Millisecond || cpu > wall*35/100 {
			t.Errorf("CPU time %v in %v of wall time; want about 25%%", cpu, wall)
		}
		if j.GetUsage().GetMemoryPeakBytes() <= 0 {
			t.Errorf("no peak memory in %v", j.GetUsage())
		}
	})

	t.Run("fork bomb stopped", func(t *testing.T) {
		// bash retries a fork that fails (dash would exit): the bomb stays at the limit.
		j := s.runLimited(&jobletv1.Limits{MaxPids: 64}, "bash", "-c", "for i in $(seq 200); do sleep 30 & done; wait")
		cg := cgroupOf(t, s.initPID(j.GetId()))
		time.Sleep(time.Second)
		peak := 0
		for range 10 {
			n, _ := strconv.Atoi(readCgroupFile(t, "pids", cg["pids"], "pids.current"))
			peak = max(peak, n)
			time.Sleep(20 * time.Millisecond)
		}
		if peak > 64 || peak < 32 {
			t.Errorf("pids.current peaked at %d, want the bomb to reach but not pass 64", peak)
		}
		// Other requests are answered meanwhile.
		if _, err := s.client.List(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r, err := s.client.Stop(ctx, j.GetId())
		if err != nil || r.GetState() != jobletv1.JobState_JOB_STATE_STOPPED {
			t.Fatalf("stop: %v %v", r, err)
		}
		if took := time.Since(start); took > s.cfg.Joblet.StopGracePeriod+2*time.Second {
			t.Errorf("stop took %v", took)
		}
		t.Logf("pids peak %d; stopped in %v", peak, time.Since(start).Round(time.Millisecond))
	})

	t.Run("refused", func(t *testing.T) {
		before, _ := s.client.List(ctx)
		for _, l := range []*jobletv1.Limits{
			{MaxCpuPercent: -5}, {MaxCpuPercent: 10000}, {CpuCores: "1,,2"}, {CpuCores: "3-1"},
			{CpuCores: "99"}, {MaxMemoryMb: 1}, {MaxPids: -1}, {MaxPids: 4},
		} {
			_, err := s.client.Run(ctx, &jobletv1.JobSpec{Command: "true", Limits: l})
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "--") {
				t.Errorf("limits %v: %v, want invalid argument naming the flag", l, err)
			}
		}
		if after, _ := s.client.List(ctx); len(after) != len(before) {
			t.Errorf("refused requests made %d records", len(after)-len(before))
		}
	})

	waitNoJobCgroups(t, name)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if dirs := cgroupDirs(t, name); len(dirs) > 0 {
		t.Errorf("cgroups left after the isolator stopped: %v", dirs)
	}
}

// A job cgroup left by a crashed isolator is killed and removed when the
// next one starts, and so is a spare cgroup it left; this isolator's own
// waiting shim sits in a spare of its own, which a 4 MB job (below
// spareMinMemoryMB) does not take.
func TestStaleCgroupsRemovedAtStart(t *testing.T) {
	cfg := testConfig(t)
	requiresCgroupV1(t)
	name := cgroupName(cfg)
	stale := filepath.Join("/sys/fs/cgroup/pids", name, "7")
	staleSpare := filepath.Join("/sys/fs/cgroup/pids", name, "_spare-1-1")
	for _, d := range []string{stale, staleSpare} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = os.Remove(stale)
		_ = os.Remove(staleSpare)
		_ = os.Remove(filepath.Dir(stale))
	})
	s := startSuite(t, cfg)
	// Served only once the start, with its cleanup, is done.
	if _, err := s.client.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{stale, staleSpare} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale cgroup %s still there after start (%v)", d, err)
		}
	}
	spare := func() string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			own, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", name, "_spare-*"))
			if len(own) == 1 {
				// The waiting shim's spawner thread, and the threads of
				// the job's init it preforked there.
				if b, _ := os.ReadFile(filepath.Join(own[0], "tasks")); len(strings.Fields(string(b))) > 0 {
					return own[0]
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no spare holding a waiting shim: %v", own)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	before := spare()
	// Whether the init of a 4 MB job survives its own start depends on
	// the init's binary (the test binary here, larger under -race), as
	// before spares; what is checked is that its cgroup is not the spare.
	j, err := s.client.Run(context.Background(), &jobletv1.JobSpec{Command: "true", Limits: &jobletv1.Limits{MaxMemoryMb: 4}})
	t.Logf("a 4 MB job: %v %v", j.GetState(), err)
	if after := spare(); after != before {
		t.Errorf("a 4 MB job took the spare %s (now %s)", before, after)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if dirs := cgroupDirs(t, name); len(dirs) > 0 {
		t.Errorf("cgroups (spares included) left after the isolator stopped: %v", dirs)
	}
}
