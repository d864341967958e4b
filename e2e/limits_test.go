package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Resource limits (issue 3), through bin/rnx against the running suite.
// Job cgroups are found from the outside: the isolator nests them in
// joblet-<first 12 hex digits of sha256(stateDir)> under its own cgroup in
// every hierarchy (isolator/README.md).

// jobCgroupParents returns the isolator's parent of job cgroups in every
// cgroup v1 hierarchy it uses, failing if one is missing.
func jobCgroupParents(t *testing.T, s *suite) map[string]string {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		t.Skip("skipping: these checks read cgroup v1 hierarchies, which this host does not have")
	}
	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pids["isolator"]))
	if err != nil {
		t.Fatal(err)
	}
	name := s.cgroupParent()
	parents := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			switch c {
			case "cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer":
				parents[c] = filepath.Join("/sys/fs/cgroup", c, f[2], name)
			}
		}
	}
	for c, dir := range parents {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("the isolator's %s parent cgroup %s is missing (%v)", c, dir, err)
		}
	}
	if len(parents) != 7 {
		t.Fatalf("isolator cgroups %v: want all 7 v1 hierarchies", parents)
	}
	return parents
}

// jobCgroups lists the job cgroups under the parents.
func jobCgroups(parents map[string]string) []string {
	var out []string
	for _, dir := range parents {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			// A waiting shim's spare cgroup (cgroup v1) is no job's.
			if e.IsDir() && !strings.HasPrefix(e.Name(), "_spare-") {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	return out
}

// noJobCgroupsLeft waits briefly for every job cgroup to be gone.
func noJobCgroupsLeft(t *testing.T, parents map[string]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := jobCgroups(parents)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("job cgroups left behind: %v", left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// statusField returns the value of `Key: value` in `rnx status id`.
func statusField(t *testing.T, id, key string) string {
	t.Helper()
	r := rnx(t, "status", id)
	if r.code != 0 {
		t.Fatalf("rnx status %s: %v", id, r)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `: (.*)$`).FindStringSubmatch(r.stdout)
	if m == nil {
		return ""
	}
	return m[1]
}

// cpuTime is the `CPU Time:` of a job.
func cpuTime(t *testing.T, id string) time.Duration {
	t.Helper()
	v := statusField(t, id, "CPU Time")
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("job %s: CPU Time %q: %v", id, v, err)
	}
	return d
}

func TestLimitsOOMKill(t *testing.T) {
	s := needSuite(t)
	parents := jobCgroupParents(t, s)
	for _, argv := range [][]string{
		// The allocating process is the job's command: it is killed.
		{"python3", "-c", "b = bytearray(200 * 1024 * 1024)"},
		// tail keeps a line (200 MB without a newline) in memory; on cgroup
		// v1 only tail is killed and the shell reports it.
		{"sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"},
	} {
		r := rnx(t, append([]string{"run", "--max-memory=64"}, argv...)...)
		id := headerID(t, r.stderr)
		if r.code == 0 {
			t.Errorf("%q under --max-memory=64: exit 0, want non-zero: %v", argv, r)
		}
		st := rnx(t, "status", id)
		if !strings.Contains(st.stdout, "Status: FAILED") || !strings.Contains(st.stdout, "out of memory") ||
			!strings.Contains(st.stdout, "limit 64 MB") || !strings.Contains(st.stdout, "OOM Kills: ") {
			t.Errorf("%q under --max-memory=64: status\n%s\nwant FAILED, out of memory (limit 64 MB) and OOM kills", argv, st.stdout)
		}
		t.Logf("%q: exit %d; %s; peak %s", argv, r.code, statusField(t, id, "Reason"), statusField(t, id, "Peak Memory"))
	}
	// The suite is untouched: a normal job right after works.
	if r := rnx(t, "run", "echo", "still here"); r.code != 0 || r.stdout != "still here\n" {
		t.Fatalf("a job after the OOM kills: %v", r)
	}
	noJobCgroupsLeft(t, parents)
}

func TestLimitsCPU(t *testing.T) {
	s := needSuite(t)
	parents := jobCgroupParents(t, s)
	r := rnx(t, "run", "--max-cpu=25", "timeout", "3", "sh", "-c", "while :; do :; done")
	if r.code != 124 { // timeout's own exit code when it ended the loop
		t.Fatalf("busy loop under timeout 3: want exit 124, got %v", r)
	}
	id := headerID(t, r.stderr)
	cpu := cpuTime(t, id)
	t.Logf("busy loop, --max-cpu=25, 3 s: CPU time %v (rnx took %v)", cpu, r.took.Round(time.Millisecond))
	// The lower bound only shows the loop ran; on a loaded machine it gets
	// far less than its quota, so it is kept low.
	if cpu > 800*time.Millisecond || cpu < 50*time.Millisecond {
		t.Errorf("busy loop under --max-cpu=25 for 3 s used %v of CPU, want at most ~0.8 s (and some)", cpu)
	}
	if got := statusField(t, id, "Max CPU"); got != "25%" {
		t.Errorf("status Max CPU %q, want 25%%", got)
	}

	loops := "for i in 1 2 3; do timeout 3 sh -c 'while :; do :; done' & done; wait"
	id, _ = mustRun(t, "--cpu-cores=0-1", "--max-cpu=150", "sh", "-c", loops)
	cpu = cpuTime(t, id)
	t.Logf("three busy loops, --cpu-cores=0-1 --max-cpu=150, 3 s: CPU time %v", cpu)
	if cpu > 4800*time.Millisecond {
		t.Errorf("three loops under --max-cpu=150 for 3 s used %v of CPU, want at most ~4.5 s (1.5 CPUs)", cpu)
	}
	noJobCgroupsLeft(t, parents)
}

func TestLimitsCores(t *testing.T) {
	s := needSuite(t)
	parents := jobCgroupParents(t, s)
	id, r := mustRun(t, "--cpu-cores=1", "grep", "Cpus_allowed_list", "/proc/self/status")
	if got := strings.Join(strings.Fields(r.stdout), " "); got != "Cpus_allowed_list: 1" {
		t.Errorf("--cpu-cores=1: %q, want Cpus_allowed_list: 1", r.stdout)
	}
	if got := statusField(t, id, "CPU Cores"); got != "1" {
		t.Errorf("status CPU Cores %q, want 1", got)
	}
	noJobCgroupsLeft(t, parents)
}

var ddSeconds = regexp.MustCompile(`copied, ([0-9.]+) s`)

func TestLimitsIO(t *testing.T) {
	s := needSuite(t)
	parents := jobCgroupParents(t, s)
	_, r := mustRun(t, "--max-iobps=10485760", "dd", "if=/dev/zero", "of=/work/f", "bs=1M", "count=50", "oflag=direct")
	m := ddSeconds.FindStringSubmatch(r.stderr + r.stdout)
	if m == nil {
		t.Fatalf("no dd summary in the output: %v", r)
	}
	secs, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("dd 50 MB oflag=direct under --max-iobps=10485760: %.2f s", secs)
	if secs < 4 {
		t.Errorf("dd wrote 50 MB in %.2f s under 10 MiB/s, want at least 4 s", secs)
	}
	noJobCgroupsLeft(t, parents)
}

// attachedLoops lists the loop devices that have a backing file.
func attachedLoops(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("/sys/block/loop*/size")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != "0" {
			out = append(out, filepath.Base(filepath.Dir(p)))
		}
	}
	return out
}

// freeBytes is the space left for root on the filesystem of dir.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bfree) * st.Bsize
}

// An IO-limited job's /work is on a disk of its own (a loop device) with
// the same cap as every job's /work (1 GiB by default): writing past it
// fails with ENOSPC, the host's disk holds at most the cap meanwhile, and
// nothing is left after the job: no loop device, no image.
func TestLimitsIOWorkCap(t *testing.T) {
	s := needSuite(t)
	parents := jobCgroupParents(t, s)
	const workCap = 1 << 30
	loopsBefore := attachedLoops(t)
	state := isolatorState("work")
	before := freeBytes(t, state)
	// The lowest free space seen while the job runs.
	lowest := make(chan int64)
	stop := make(chan struct{})
	go func() {
		low := before
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var st unix.Statfs_t
			if unix.Statfs(state, &st) == nil {
				low = min(low, int64(st.Bfree)*st.Bsize)
			}
			select {
			case <-stop:
				lowest <- low
				return
			case <-tick.C:
			}
		}
	}()
	_, r := mustRun(t, "--max-iobps=104857600", "sh", "-c", `
		dd if=/dev/zero of=/work/big bs=1M count=1200 2>&1 | grep -o 'No space left on device'
		sync -f /work/big; stat -c %s /work/big; sleep 1`)
	close(stop)
	low := <-lowest
	var size int64
	if _, err := fmt.Sscanf(r.stdout, "No space left on device\n%d\n", &size); err != nil {
		t.Fatalf("writing 1200 MiB to a 1 GiB /work under --max-iobps: %v, want ENOSPC and the file's size (%v)", r, err)
	}
	drop := before - low
	t.Logf("/work filled to %d bytes (cap %d); host free space dropped by at most %d bytes", size, workCap, drop)
	if size > workCap || size < workCap*9/10 {
		t.Errorf("/work held %d bytes at ENOSPC, want about the cap, %d", size, workCap)
	}
	// Other users of the disk may write meanwhile: a little slack.
	if drop > workCap+128<<20 {
		t.Errorf("the host's free space dropped by %d bytes while a job filled a %d-byte /work", drop, workCap)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(attachedLoops(t), loopsBefore) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := attachedLoops(t); !slices.Equal(after, loopsBefore) {
		t.Errorf("loop devices attached after the job: %v, before: %v", after, loopsBefore)
	}
	if imgs, _ := filepath.Glob(filepath.Join(state, "*.img")); len(imgs) != 0 {
		t.Errorf("/work images left: %v", imgs)
	}
	noJobCgroupsLeft(t, parents)
}

func TestLimitsPids(t *testing.T) {
	s := needSuite(t)
	parents := jobCgroupParents(t, s)
	// bash retries a fork that fails, so the bomb stays at the limit until
	// it is stopped.
	id := detach(t, "--max-pids=64", "bash", "-c", "for i in $(seq 200); do sleep 30 & done; wait")
	t.Cleanup(func() { rnx(t, "stop", id) })
	deadline := time.Now().Add(10 * time.Second)
	peak := 0
	for time.Now().Before(deadline) {
		n := len(hostProcesses("sleep", "30"))
		peak = max(peak, n)
		if n > 64 {
			t.Fatalf("%d `sleep 30` processes under --max-pids=64", n)
		}
		if peak >= 50 && time.Since(deadline.Add(-10*time.Second)) > 2*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if peak < 50 {
		t.Errorf("the fork bomb reached only %d processes; want it to run up against the limit of 64", peak)
	}
	// Other requests are answered meanwhile.
	if r := rnx(t, "list"); r.code != 0 || r.took > 5*time.Second {
		t.Errorf("rnx list during the fork bomb: %v", r)
	}
	start := time.Now()
	stopJob(t, id)
	waitStatus(t, id, "STOPPED", stopGrace+3*time.Second)
	for len(hostProcesses("sleep", "30")) > 0 {
		if time.Since(start) > stopGrace+3*time.Second {
			t.Fatalf("job %s stopped but %d `sleep 30` still run", id, len(hostProcesses("sleep", "30")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("fork bomb peaked at %d sleeps; stopped in %v", peak, time.Since(start).Round(time.Millisecond))
	if got := statusField(t, id, "Max PIDs"); got != "64" {
		t.Errorf("status Max PIDs %q, want 64", got)
	}
	noJobCgroupsLeft(t, parents)
}

func TestLimitsRejected(t *testing.T) {
	s := needSuite(t)
	parents := jobCgroupParents(t, s)
	before := len(listJSON(t))
	for _, tc := range []struct{ flag, want string }{
		{"--max-cpu=-5", "--max-cpu"},
		{"--max-cpu=10000", "--max-cpu=10000"},
		{"--cpu-cores=1,,2", "--cpu-cores"},
		{"--cpu-cores=3-1", "--cpu-cores"},
		{"--cpu-cores=99", "--cpu-cores"},
		{"--max-memory=1", "--max-memory=1"},
		{"--max-pids=-1", "--max-pids"},
		{"--max-pids=4", "--max-pids=4"},
	} {
		r := rnx(t, "run", tc.flag, "true")
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("rnx run %s true: want a non-zero exit and an error naming %s; got %v", tc.flag, tc.want, r)
		}
		oneLine(t, "rnx run "+tc.flag, r.stderr)
		if left := jobCgroups(parents); len(left) > 0 {
			t.Errorf("rnx run %s: job cgroups exist: %v", tc.flag, left)
		}
	}
	if after := len(listJSON(t)); after != before {
		t.Errorf("refused requests made %d job records", after-before)
	}
	// Zero is the daemon's default, not an error.
	mustRun(t, "--max-cpu=0", "--max-memory=0", "true")
	noJobCgroupsLeft(t, parents)
}
