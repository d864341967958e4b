package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/daemon"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// restartConfig is a test configuration whose isolator leaves running jobs
// to their shims when it stops, as production does.
func restartConfig(t *testing.T) config.Config {
	cfg := testConfig(t)
	cfg.Joblet.StopJobsOnExit = false
	return cfg
}

// restartIsolator stops s's isolator (leaving its jobs running) and starts a
// new one on the same state directory, sockets, logd and netd.
func (s *suite) restartIsolator() {
	t := s.t
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("first isolator: %v", err)
	}
	il, err := transport.Listen(s.cfg.SocketPath("isolator"), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	env := daemon.Env{Name: "isolator", Config: s.cfg, Log: zerolog.New(zerolog.NewTestWriter(t)), Listener: il}
	go func() { ran <- Run(ctx, env) }()
	s.stop = func() error {
		cancel()
		select {
		case err := <-ran:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("isolator did not stop")
		}
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	cc, err := transport.Dial(s.cfg.SocketPath("isolator"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	s.client = isolatorapi.NewClient(cc)
}

// shimPID reads the pid of a job's shim from its record on disk.
func (s *suite) shimPID(id string) int {
	s.t.Helper()
	rec := s.record(id)
	if rec.Shim.PID <= 0 {
		s.t.Fatalf("no shim pid in the record of job %s: %+v", id, rec)
	}
	return rec.Shim.PID
}

// rss is a process's resident set size and its parts (the binary's pages
// are shared memory, the same pages in the isolator and every shim).
func rss(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for l := range strings.Lines(string(b)) {
		for _, k := range []string{"VmRSS", "RssAnon", "RssFile", "RssShmem"} {
			if v, ok := strings.CutPrefix(l, k+":"); ok {
				parts = append(parts, k+" "+strings.Join(strings.Fields(v), " "))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// tick prints 30 numbered lines, one every 100 ms, then exits 7.
const tick = `i=1; while [ $i -le 30 ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done; exit 7`

func ticks() string {
	var b strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

// A job keeps running while its isolator restarts: all its output reaches
// logd, once and in order, and the new isolator records its exit code.
func TestJobRunsAcrossRestart(t *testing.T) {
	s := startSuite(t, restartConfig(t))
	j := s.run("sh", "-c", tick)
	id := j.GetId()
	shimPID, initPID := s.shimPID(id), s.initPID(id)
	time.Sleep(700 * time.Millisecond)
	t.Logf("shim pid %d while the job runs: %s", shimPID, rss(t, shimPID))

	s.restartIsolator()
	if err := syscall.Kill(initPID, 0); err != nil {
		t.Fatalf("the job's init %d is gone after the isolator stopped: %v", initPID, err)
	}
	got, err := s.client.Get(context.Background(), id)
	if err != nil || got.GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("after the restart: %v %v", got, err)
	}
	j, out := s.ended(id)
	if j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetExitCode() != 7 || j.GetReason() != "exited with code 7" {
		t.Errorf("record %v", j)
	}
	if out != ticks() {
		t.Errorf("output %q, want every line once and in order", out)
	}
	if j.GetUsage().GetCpuTimeUsec() <= 0 {
		t.Errorf("no usage from the adopted job's cgroup: %v", j.GetUsage())
	}
	waitGone(t, shimPID)
	assertGone(t, initPID)
	waitRemoved(t, filepath.Join(s.cfg.StateDir("isolator"), "shims", id+".json"))
	next := s.run("echo", "after")
	if next.GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Errorf("next job %v", next)
	}
	// Let it end here: this isolator leaves running jobs (and their cgroups)
	// behind when it stops, and no later isolator would adopt them.
	s.ended(next.GetId())
}

// A job that ends while its isolator is down gets its real exit code when
// the isolator is back, from the result its shim recorded.
func TestJobEndsWhileIsolatorDown(t *testing.T) {
	s := startSuite(t, restartConfig(t))
	j := s.run("sh", "-c", "echo a; sleep 0.5; echo b; exit 7")
	id := j.GetId()
	shimPID := s.shimPID(id)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, shimPID)
	result := filepath.Join(s.cfg.StateDir("isolator"), "shims", id+".json")
	if _, err := os.Stat(result); err != nil {
		t.Fatalf("no result recorded by the shim: %v", err)
	}
	s.restartIsolator()
	j, out := s.ended(id)
	if j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetExitCode() != 7 || out != "a\nb\n" {
		t.Errorf("record %v, output %q", j, out)
	}
	waitRemoved(t, result)
}

// waitRemoved waits until the registry removed a shim's result file, which
// it does once the job's final record is saved.
func waitRemoved(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the shim's result file %s is left (%v)", path, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGone waits until pid has exited (a zombie counts as gone: the shim
// is reaped by whoever its parent is).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still running", pid)
}

// A shim killed while its isolator follows the job leaves no result: the
// job ends FAILED with ReasonShimLost (not a bare "lost track"), and what
// was left of it (its init, its cgroup) is killed and removed.
func TestShimKilledWhileFollowed(t *testing.T) {
	s := startSuite(t, testConfig(t))
	j := s.run("sh", "-c", "echo started; sleep 60")
	id := j.GetId()
	shimPID, initPID := s.shimPID(id), s.initPID(id)
	if err := syscall.Kill(shimPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the shim %d: %v", shimPID, err)
	}
	j, _ = s.ended(id)
	if j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetReason() != jobs.ReasonShimLost || j.GetExitCode() != -1 {
		t.Errorf("record %v", j)
	}
	waitGone(t, initPID) // killed with the job's cgroup; reaped by the host's init
	waitNoJobCgroups(t, cgroupName(s.cfg))
}

// waitNoJobCgroups waits until no job cgroup is left under the isolator's
// parent: a job's cgroup is removed after its final record is saved.
func waitNoJobCgroups(t *testing.T, name string) {
	t.Helper()
	left := jobCgroupsLeft(t, name)
	for deadline := time.Now().Add(10 * time.Second); len(left) != 0 && time.Now().Before(deadline); left = jobCgroupsLeft(t, name) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) != 0 {
		t.Errorf("job cgroups left 10 s after the job's end: %v", left)
	}
}

// A "reboot": the isolator goes down and the job's shim and init die with
// it (as when the machine stops), then the isolator starts again on the
// same state. The job is FAILED with a reason that says what happened,
// and nothing of it is left: cgroup, workspace, root, shim result, network
// lease; its log is closed, so followers end; the next job runs.
func TestJobLostWithItsShim(t *testing.T) {
	s := startSuite(t, restartConfig(t))
	j := s.run("sh", "-c", "echo started; sleep 60")
	id := j.GetId()
	shimPID, initPID := s.shimPID(id), s.initPID(id)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// The shim first: a shim that saw its job end would record a result.
	for _, pid := range []int{shimPID, initPID} {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
		waitGone(t, pid)
	}
	state := s.cfg.StateDir("isolator")
	if left := jobCgroupsLeft(t, cgroupName(s.cfg)); len(left) == 0 {
		t.Fatal("the killed job's cgroup is not there to clean: the test is not testing")
	}

	s.restartIsolator()
	j, _ = s.ended(id)
	if j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetReason() != jobs.ReasonShimLost ||
		j.GetExitCode() != -1 || j.GetEndTime() == nil {
		t.Errorf("record %v", j)
	}
	for _, p := range []string{
		filepath.Join(state, "work", id), filepath.Join(state, "roots", id), filepath.Join(state, "shims", id+".json"),
	} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	waitNoJobCgroups(t, cgroupName(s.cfg))
	for deadline := time.Now().Add(5 * time.Second); len(s.netd.left()) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("network lease not given back: %v", s.netd.left())
		}
	}
	next := s.run("echo", "after")
	if end, out := s.ended(next.GetId()); end.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED || out != "after\n" {
		t.Errorf("next job %v, output %q", end, out)
	}
}
