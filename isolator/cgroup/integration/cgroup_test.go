package integration

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// name is this test run's own parent cgroup, so a running daemon's jobs
// are never touched.
var name = fmt.Sprintf("joblet-test-%d", os.Getpid())

var parent *cgroup.Parent

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		p, err := cgroup.NewParent(zerolog.Nop(), cgroup.Options{Name: name})
		if err != nil {
			fmt.Fprintln(os.Stderr, "NewParent:", err)
			os.Exit(1)
		}
		parent = p
	}
	code := m.Run()
	if parent != nil {
		if err := parent.Remove(); err != nil {
			fmt.Fprintln(os.Stderr, "remove parent:", err)
			code = 1
		}
		if left := leftovers(); len(left) > 0 {
			fmt.Fprintln(os.Stderr, "cgroups left behind:", left)
			code = 1
		}
	}
	os.Exit(code)
}

// leftovers finds any directory named like this run's parent cgroup in
// every mounted hierarchy.
func leftovers() []string {
	var found []string
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), name) {
			found = append(found, p)
		}
		return nil
	})
	return found
}

func requireRoot(t testing.TB) *cgroup.Parent {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups on the real kernel")
	}
	return parent
}

// newJob creates a job cgroup that is destroyed, and checked gone, at the
// end of the test.
func newJob(t *testing.T, l *jobletv1.Limits, workDir string) *cgroup.Job {
	t.Helper()
	p := requireRoot(t)
	id := strings.ReplaceAll(t.Name(), "/", "_")
	j, err := p.Create(id, l, workDir)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	paths := j.Paths()
	t.Cleanup(func() {
		if err := j.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		for c, dir := range paths {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s cgroup %s remains after Destroy", c, dir)
			}
		}
	})
	return j
}

// proc is a shell script running in a job's cgroup.
type proc struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// start runs script in j the way the isolator starts a job on cgroup v1:
// the process waits on a handshake (here, a line on stdin) until it is in
// the cgroup, so the script's first instruction is already limited.
func start(t *testing.T, j *cgroup.Job, script string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command("sh", "-c", "read _ && {\n"+script+"\n}")}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	inside, err := j.UseCgroupFD(p.cmd.SysProcAttr)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = p.cmd.Wait()
	})
	if !inside {
		if err := j.Apply(p.cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		werr := p.cmd.Wait()
		t.Fatalf("handshake: %v; job ended: %v: %s", err, werr, p.out.String())
	}
	_ = stdin.Close()
	return p
}

func read(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// diskOf is dir's device; on this VM the workspace is on a whole disk.
func diskOf(t *testing.T, dir string) string {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
}

func TestLimitsWrittenBeforeAnyProcess(t *testing.T) {
	p := requireRoot(t)
	if p.Version() != 1 {
		t.Skip("checks cgroup v1 files; this host is v2")
	}
	work := t.TempDir()
	j := newJob(t, &jobletv1.Limits{MaxCpuPercent: 25, MaxMemoryMb: 64, MaxIoBps: 10485760, CpuCores: "1", MaxPids: 64}, work)
	paths := j.Paths()
	if pids, err := j.Pids(); err != nil || len(pids) != 0 {
		t.Fatalf("new job cgroup has processes %v, %v", pids, err)
	}
	dev := diskOf(t, work)
	for _, c := range []struct{ ctrl, file, want string }{
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpu", "cpu.cfs_quota_us", "25000"},
		{"memory", "memory.limit_in_bytes", "67108864"},
		{"memory", "memory.memsw.limit_in_bytes", "67108864"},
		{"blkio", "blkio.throttle.read_bps_device", dev + " 10485760"},
		{"blkio", "blkio.throttle.write_bps_device", dev + " 10485760"},
		{"cpuset", "cpuset.cpus", "1"},
		{"pids", "pids.max", "64"},
	} {
		if c.file == "memory.memsw.limit_in_bytes" {
			if _, err := os.Stat(filepath.Join(paths["memory"], c.file)); err != nil {
				continue // no swap accounting in this kernel
			}
		}
		if got := read(t, paths[c.ctrl], c.file); got != c.want {
			t.Errorf("%s = %q, want %q", c.file, got, c.want)
		}
	}
	if got, want := read(t, paths["cpuset"], "cpuset.mems"), read(t, filepath.Dir(paths["cpuset"]), "cpuset.mems"); got != want || got == "" {
		t.Errorf("cpuset.mems = %q, want the parent's %q", got, want)
	}
}

func TestCpusetPinsTheJob(t *testing.T) {
	j := newJob(t, &jobletv1.Limits{CpuCores: "1"}, "")
	p := start(t, j, "grep Cpus_allowed_list /proc/self/status")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("job: %v: %s", err, p.out.String())
	}
	if got := strings.TrimSpace(p.out.String()); got != "Cpus_allowed_list:\t1" {
		t.Errorf("job says %q, want Cpus_allowed_list 1", got)
	}
}

func TestMemoryLimitOOMKills(t *testing.T) {
	t.Parallel()
	j := newJob(t, &jobletv1.Limits{MaxMemoryMb: 64}, "")
	// tail keeps all of the newline-free input as its last line.
	p := start(t, j, "head -c 200m /dev/zero | tail -n 1 >/dev/null")
	err := p.cmd.Wait()
	if err == nil {
		t.Fatalf("200 MB under 64 MB succeeded: %s", p.out.String())
	}
	u, serr := j.Stats()
	if serr != nil {
		t.Fatal(serr)
	}
	if u.OOMKills < 1 {
		t.Errorf("Stats = %+v after %v, want an OOM kill", u, err)
	}
	if u.MemoryPeakBytes == 0 || u.MemoryPeakBytes > 64<<20 {
		t.Errorf("peak memory %d, want > 0 and <= 64 MiB", u.MemoryPeakBytes)
	}
	if ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.ExitStatus() != 128+int(syscall.SIGKILL) {
		t.Errorf("shell exit %v, want 137 (tail SIGKILLed)", p.cmd.ProcessState)
	}
}

// busy runs n busy loops in j for wall time and returns the CPU time used.
func busy(t *testing.T, j *cgroup.Job, n int, wall time.Duration) time.Duration {
	t.Helper()
	script := strings.Repeat("while :; do :; done & ", n) + "wait"
	start(t, j, script)
	time.Sleep(wall)
	u, err := j.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := j.KillAll(); err != nil {
		t.Fatal(err)
	}
	return u.CPUTime
}

func TestCPUQuota25(t *testing.T) {
	t.Parallel()
	j := newJob(t, &jobletv1.Limits{MaxCpuPercent: 25}, "")
	used := busy(t, j, 1, 3*time.Second)
	t.Logf("max-cpu 25, 3 s wall: %v CPU", used)
	// The lower bound only shows the loop ran: this VM's two CPUs are
	// shared with other work, so the job may get less than its quota.
	if used > 800*time.Millisecond || used < 75*time.Millisecond {
		t.Errorf("used %v CPU in 3 s under 25%%, want about 0.75 s (at most 0.8 s)", used)
	}
}

func TestCPUQuota150OnTwoCores(t *testing.T) {
	t.Parallel()
	j := newJob(t, &jobletv1.Limits{MaxCpuPercent: 150, CpuCores: "0-1"}, "")
	used := busy(t, j, 3, 3*time.Second)
	t.Logf("max-cpu 150 on cores 0-1, three loops, 3 s wall: %v CPU", used)
	if used > 4700*time.Millisecond || used < 450*time.Millisecond {
		t.Errorf("used %v CPU in 3 s under 150%%, want about 4.5 s (at most 1.5 CPUs)", used)
	}
}

func TestIOThrottle(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	j := newJob(t, &jobletv1.Limits{MaxIoBps: 10485760}, work)
	began := time.Now()
	p := start(t, j, "dd if=/dev/zero of="+filepath.Join(work, "f")+" bs=1M count=50 oflag=direct")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("dd: %v: %s", err, p.out.String())
	}
	took := time.Since(began)
	t.Logf("dd 50 MB oflag=direct under 10 MiB/s: %v (%s)", took, strings.TrimSpace(p.out.String()))
	if took < 4*time.Second {
		t.Errorf("dd took %v, want at least 4 s", took)
	}
}

func TestPidsLimitAndKillAll(t *testing.T) {
	j := newJob(t, &jobletv1.Limits{MaxPids: 64}, "")
	pidsDir := j.Paths()["pids"]
	start(t, j, "while :; do sleep 100 & done")
	most := 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		pids, err := j.Pids()
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, len(pids))
		if pidsDir != "" {
			cur, _ := strconv.Atoi(read(t, pidsDir, "pids.current"))
			most = max(most, cur)
		}
	}
	if most > 64 || most < 60 {
		t.Errorf("at most %d processes seen, want the bomb held at 64", most)
	}
	if pidsDir != "" {
		if ev := read(t, pidsDir, "pids.events"); ev == "max 0" {
			t.Errorf("pids.events = %q: no fork was refused", ev)
		}
	}
	if err := j.KillAll(); err != nil {
		t.Fatalf("KillAll: %v", err)
	}
	if pids, err := j.Pids(); err != nil || len(pids) != 0 {
		t.Fatalf("after KillAll: %v, %v", pids, err)
	}
}

// Running lists the job's live processes, and nothing once they are
// killed.
func TestRunning(t *testing.T) {
	j := newJob(t, &jobletv1.Limits{}, "")
	p := start(t, j, "sleep 1000")
	var live []int
	for deadline := time.Now().Add(5 * time.Second); !slices.Contains(live, p.cmd.Process.Pid); time.Sleep(10 * time.Millisecond) {
		var err error
		if live, err = j.Running(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Running = %v, want the job's shell %d among them", live, p.cmd.Process.Pid)
		}
	}
	if err := j.KillAll(); err != nil {
		t.Fatal(err)
	}
	if live, err := j.Running(); err != nil || len(live) != 0 {
		t.Errorf("Running after KillAll = %v, %v", live, err)
	}
}

func TestSignalAndCleanupOfStaleJobs(t *testing.T) {
	p := requireRoot(t)
	j, err := p.Create("stale", &jobletv1.Limits{MaxPids: 8}, "")
	if err != nil {
		t.Fatal(err)
	}
	paths := j.Paths()
	proc := start(t, j, "sleep 100")
	// A daemon restarting after a crash finds the cgroup and its process.
	again, err := cgroup.NewParent(zerolog.New(zerolog.NewTestWriter(t)), cgroup.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if err := proc.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("stale job's process ended with %v, want killed", err)
	}
	for c, dir := range paths {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("stale %s cgroup %s remains", c, dir)
		}
	}
}

func TestSignalTerm(t *testing.T) {
	j := newJob(t, &jobletv1.Limits{}, "")
	p := start(t, j, "sleep 100")
	time.Sleep(50 * time.Millisecond)
	if err := j.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err == nil {
		t.Error("job survived SIGTERM")
	}
}
