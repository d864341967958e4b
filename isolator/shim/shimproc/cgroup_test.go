package shimproc

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// jobCgroupOf makes a real job cgroup with the isolator's package cgroup
// (the library), as the isolator makes a job's, and opens it as the shim
// does, from its paths.
func jobCgroupOf(t *testing.T) (*cgroup.Job, *jobCgroup) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: making a cgroup needs root")
	}
	parent, err := cgroup.NewParent(zerolog.Nop(), cgroup.Options{Name: fmt.Sprintf("joblet-shimproctest-%d", os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := parent.Remove(); err != nil {
			t.Errorf("remove the test's parent cgroup: %v", err)
		}
	})
	j, err := parent.Create("cg1", &jobletv1.Limits{MaxPids: 64, MaxMemoryMb: 256}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Destroy() })
	if _, err := j.Place(0); err != nil {
		t.Fatal(err)
	}
	mine, err := openJobCgroup("cg1", j.Paths())
	if err != nil {
		t.Fatal(err)
	}
	return j, mine
}

// A process put in the job's cgroup by the shim's code is where the
// library sees it, and the counters the shim records at the job's end are
// the ones the isolator's cgroup.Job reads.
func TestJobCgroupMatchesLibrary(t *testing.T) {
	lib, mine := jobCgroupOf(t)
	// Stopped at once, so it is moved in before it burns CPU and memory.
	cmd := exec.Command("sh", "-c", "kill -STOP $$; i=0; x=$(head -c 8000000 /dev/zero | tr '\\0' a); while [ $i -lt 20000 ]; do i=$((i+1)); done")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if ok, err := mine.UseCgroupFD(cmd.SysProcAttr); err != nil {
		t.Fatal(err)
	} else if ok {
		cmd.SysProcAttr.UseCgroupFD = true
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if in, err := mine.Holds(pid); err != nil {
		t.Fatal(err)
	} else if !in {
		if err := mine.Apply(pid); err != nil {
			t.Fatal(err)
		}
	}
	if in, err := mine.Holds(pid); err != nil || !in {
		t.Fatalf("Holds(%d) after Apply: %v, %v", pid, in, err)
	}
	if in, err := lib.Holds(pid); err != nil || !in {
		t.Fatalf("the library does not see %d in the job's cgroup: %v, %v", pid, in, err)
	}
	if in, err := mine.Holds(os.Getpid()); err != nil || in {
		t.Fatalf("Holds(test process): %v, %v", in, err)
	}
	// Continue it once it has stopped itself.
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if st := string(b); len(st) > 0 && containsState(st, 'T') {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := mine.stats()
	if err != nil {
		t.Fatal(err)
	}
	want, err := lib.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got.CPUTime != want.CPUTime || got.MemoryPeakBytes != want.MemoryPeakBytes || got.OOMKills != want.OOMKills {
		t.Fatalf("shim read %+v, library %+v", got, want)
	}
	if got.CPUTime == 0 || got.MemoryPeakBytes < 8e6 {
		t.Fatalf("the job's CPU time and memory peak not counted: %+v", got)
	}
}

// containsState reports whether /proc/<pid>/stat text st has state s.
func containsState(st string, s byte) bool {
	for i := len(st) - 1; i > 0; i-- {
		if st[i] == ')' {
			return i+2 < len(st) && st[i+2] == s
		}
	}
	return false
}

// Paths the isolator did not make absolute are refused, before anything
// is written.
func TestOpenJobCgroupRefusesRelativePaths(t *testing.T) {
	if _, err := openJobCgroup("x", map[string]string{"memory": "joblet/x"}); err == nil {
		t.Fatal("a relative cgroup path was accepted")
	}
}
