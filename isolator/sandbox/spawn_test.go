package sandbox_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// holdingCgroup is a fakeCgroup that says whether it holds a process.
type holdingCgroup struct {
	fakeCgroup
	holds  bool
	asked  []int
	errOut error
}

func (c *holdingCgroup) Holds(pid int) (bool, error) {
	c.asked = append(c.asked, pid)
	return c.holds, c.errOut
}

// spawnOn runs start on a goroutine locked to a thread of its own, as the
// shim's spawner does, and records that thread.
func spawnOn(tid *int, calls *int) func(func() error) error {
	return func(start func() error) error {
		*calls++
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			*tid = unix.Gettid()
			done <- start()
		}()
		return <-done
	}
}

// An init started by Spec.Spawn is let go without Apply only when the
// cgroup says it holds it; otherwise it is moved in at its gate, as any.
func TestSpawnedInitIsCheckedBeforeItGoes(t *testing.T) {
	requiresRoot(t)
	for _, c := range []struct {
		name      string
		holds     bool
		noHolder  bool
		wantMoved bool
	}{
		{"held", true, false, false},
		{"not held", false, false, true},
		{"cannot tell", false, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, marker := newSpec(t, "echo", "hi")
			cg := &holdingCgroup{fakeCgroup: fakeCgroup{t: t, rootDir: spec.RootDir}, holds: c.holds}
			spec.Cgroup = cg
			if c.noHolder {
				spec.Cgroup = &cg.fakeCgroup
			}
			var tid, calls int
			spec.Spawn = spawnOn(&tid, &calls)
			j, err := start(t, spec, marker)
			if err != nil {
				t.Fatal(err)
			}
			if calls != 1 || tid == 0 {
				t.Fatalf("Spawn called %d times (thread %d), want once", calls, tid)
			}
			if !c.noHolder && (len(cg.asked) != 1 || cg.asked[0] != j.proc.Pid()) {
				t.Errorf("Holds asked about %v, want the init %d", cg.asked, j.proc.Pid())
			}
			if moved := len(cg.pids) == 1; moved != c.wantMoved || j.proc.Moved() != c.wantMoved || len(cg.pids) > 1 {
				t.Errorf("Apply calls %v, Moved %v; want moved %v", cg.pids, j.proc.Moved(), c.wantMoved)
			}
			if c.wantMoved && !cg.idle {
				t.Error("the init went past its gate before Apply returned")
			}
			if res := j.wait(); res.ExitCode != 0 || j.stdout.String() != "hi\n" {
				t.Errorf("got %q %+v", j.stdout.String(), res)
			}
		})
	}
}

// A failing Holds or Spawn leaves nothing running and runs nothing.
func TestSpawnFailures(t *testing.T) {
	requiresRoot(t)
	before := countChildren(t)
	holdErr := errors.New("cannot read cgroup.procs")
	spec, marker := newSpec(t, "touch", "/work/ran")
	var tid, calls int
	spec.Cgroup = &holdingCgroup{fakeCgroup: fakeCgroup{t: t, rootDir: spec.RootDir}, errOut: holdErr}
	spec.Spawn = spawnOn(&tid, &calls)
	if _, err := start(t, spec, marker); !errors.Is(err, holdErr) {
		t.Fatalf("Start with a failing Holds: %v, want it to wrap %v", err, holdErr)
	}
	spawnErr := errors.New("thread did not end")
	spec2, marker2 := newSpec(t, "touch", "/work/ran")
	spec2.Cgroup = &holdingCgroup{fakeCgroup: fakeCgroup{t: t, rootDir: spec2.RootDir}, holds: true}
	spec2.Spawn = func(start func() error) error {
		if err := start(); err != nil {
			return err
		}
		return spawnErr // after the clone: the init waits at its gate
	}
	if _, err := start(t, spec2, marker2); !errors.Is(err, spawnErr) {
		t.Fatalf("Start with a failing Spawn: %v, want it to wrap %v", err, spawnErr)
	}
	if after := countChildren(t); after != before {
		t.Errorf("children of the test went from %d to %d after failed starts", before, after)
	}
	for _, d := range []string{spec.WorkDir, spec2.WorkDir} {
		if ran(d) {
			t.Errorf("the command ran in %s although the init was never let go", d)
		}
	}
}

func ran(workDir string) bool {
	_, err := os.Stat(filepath.Join(workDir, "ran"))
	return err == nil
}
