package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
)

// TestJobInitHandsOverToTheInheritedReaper: with a reaper binary set in
// the isolator (sandbox.UseReaperBinary), a shim inherits its sealed copy
// and the job's init becomes it once the command runs; the job is then
// stopped by SIGTERM (forwarded to the command, which traps it) and
// reports its exit code as before. Later tests in this process keep the
// init binary (jobs run the same either way), not the reaper: one test
// looks at the init's binary while the job runs.
func TestJobInitHandsOverToTheInheritedReaper(t *testing.T) {
	requiresRoot(t)
	reaper := sandboxtest.BuildReaper(t, "..")
	if err := sandbox.UseInitBinary(sandboxtest.BuildInit(t, "..")); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.UseReaperBinary(reaper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sandbox.DropReaper)
	for _, c := range []struct {
		script string
		stop   bool
		code   int
	}{
		{script: `trap 'exit 42' TERM; touch /work/ready; while :; do sleep 0.05; done`, stop: true, code: 42},
		{script: `exit 3`, code: 3},
	} {
		// The script runs once /work/go exists, made once the init has
		// handed over: the handover is never skipped for a command that
		// has already exited, however loaded the machine.
		spec := jobSpec(t, fmt.Sprintf("reaper%d", c.code), "sh", "-c", "while [ ! -e /work/go ]; do sleep 0.01; done\n"+c.script)
		p, err := Start(spec)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid()))
			if err == nil && string(comm) == "joblet-reaper\n" {
				break
			}
			if time.Now().After(deadline) {
				_ = p.Kill()
				t.Fatalf("%q: the job's init (pid %d) did not hand over to the reaper: comm %q, %v", c.script, p.Pid(), comm, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := os.WriteFile(filepath.Join(spec.WorkDir, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if c.stop {
			// Once the trap is set.
			for _, err := os.Stat(filepath.Join(spec.WorkDir, "ready")); err != nil; _, err = os.Stat(filepath.Join(spec.WorkDir, "ready")) {
				if time.Now().After(deadline) {
					_ = p.Kill()
					t.Fatalf("%q: not ready: %v", c.script, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := p.Terminate(); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := waitReleased(t, p); err != nil || r.ExitCode != c.code || r.Signal != 0 {
			t.Fatalf("%q: Wait: %+v, %v; want exit %d", c.script, r, err, c.code)
		}
	}
}
