package sandbox_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

// fakeCgroup stands in for a cgroup v1 job cgroup: the init must be moved in
// by pid. Apply checks that the init is held at its gate meanwhile.
type fakeCgroup struct {
	t        *testing.T
	rootDir  string // the job's RootDir: the init mounts its new root there
	applyErr error
	fdErr    error
	pids     []int
	idle     bool // the init had started nothing while Apply ran
}

func (c *fakeCgroup) UseCgroupFD(*syscall.SysProcAttr) (bool, error) { return false, c.fdErr }

func (c *fakeCgroup) Apply(pid int) error {
	c.pids = append(c.pids, pid)
	// Long enough for an init that did not wait to have built its root and
	// started the command.
	time.Sleep(300 * time.Millisecond)
	c.idle = childrenOf(c.t, pid) == "" && !mountedRoot(pid, c.rootDir)
	return c.applyErr
}

// childrenOf lists the children of every thread of pid.
func childrenOf(t *testing.T, pid int) string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		out = append(out, strings.Fields(string(c))...)
	}
	return strings.Join(out, " ")
}

// mountedRoot reports whether the init pid has begun building the job's
// root: a tmpfs on rootDir, or, once pivoted, a mount on /work; or is
// already a zombie, its job done.
func mountedRoot(pid int, rootDir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return true
	}
	return strings.Contains(string(b), " "+rootDir+" ") || strings.Contains(string(b), " /work ")
}

func TestStartGateWaitsForApply(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "echo", "hi")
	cg := &fakeCgroup{t: t, rootDir: spec.RootDir}
	spec.Cgroup = cg
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if len(cg.pids) != 1 || cg.pids[0] != j.proc.Pid() {
		t.Errorf("Apply called with %v, want once with the init's pid %d", cg.pids, j.proc.Pid())
	}
	if !cg.idle {
		t.Error("the init went past its gate before Apply returned")
	}
	if res := j.wait(); res != (sandbox.Result{}) || j.stdout.String() != "hi\n" {
		t.Errorf("got %q %+v, want \"hi\\n\" and exit 0", j.stdout.String(), res)
	}
}

func TestStartGateRefused(t *testing.T) {
	requiresRoot(t)
	before := countChildren(t)
	applyErr := errors.New("no such cgroup")
	spec, marker := newSpec(t, "touch", "/work/ran")
	spec.Cgroup = &fakeCgroup{t: t, rootDir: spec.RootDir, applyErr: applyErr}
	if _, err := start(t, spec, marker); !errors.Is(err, applyErr) {
		t.Fatalf("Start with a failing Apply: %v, want it to wrap %v", err, applyErr)
	}
	if after := countChildren(t); after != before {
		t.Errorf("children of the test went from %d to %d after a refused start", before, after)
	}
	if _, err := os.Stat(spec.WorkDir + "/ran"); err == nil {
		t.Error("the command ran although the init was never let go")
	}

	fdErr := errors.New("open cgroup")
	spec, marker = newSpec(t, "true")
	spec.Cgroup = &fakeCgroup{t: t, fdErr: fdErr}
	if _, err := start(t, spec, marker); !errors.Is(err, fdErr) {
		t.Fatalf("Start with a failing UseCgroupFD: %v, want it to wrap %v", err, fdErr)
	}
	if after := countChildren(t); after != before {
		t.Errorf("children of the test went from %d to %d after a failed UseCgroupFD", before, after)
	}
}
