package sandbox_test

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

// A running job's Process parks (its pid and message pipe, nothing read
// ahead), and a Process resumed from that, in the init's parent (here the
// same process, as after the shim's exec), waits for the job, reaps its
// init and signals it as the first one did.
func TestParkAndResume(t *testing.T) {
	requiresRoot(t)
	for _, c := range []struct {
		name   string
		script string
		kill   bool
		want   sandbox.Result
	}{
		{name: "exit", script: "sleep 0.3; exit 7", want: sandbox.Result{ExitCode: 7}},
		{name: "term", script: `trap "exit 42" TERM; while :; do sleep 0.05; done`, kill: true, want: sandbox.Result{ExitCode: 42}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, marker := newSpec(t, "sh", "-c", c.script)
			j, err := start(t, spec, marker)
			if err != nil {
				t.Fatal(err)
			}
			pk, ok := j.proc.Park()
			if !ok || pk.PID != j.proc.Pid() || pk.Sync == nil {
				t.Fatalf("Park = %+v, %v; want the init %d and its pipe", pk, ok, j.proc.Pid())
			}
			p, err := sandbox.Resume(spec.ID, pk, j.proc.Moved())
			if err != nil {
				t.Fatal(err)
			}
			if p.Pid() != pk.PID {
				t.Errorf("resumed Pid %d, want %d", p.Pid(), pk.PID)
			}
			if c.kill {
				time.Sleep(100 * time.Millisecond) // the trap set
				if err := p.Terminate(); err != nil {
					t.Fatal(err)
				}
			}
			res, err := p.Wait()
			if err != nil || res != c.want {
				t.Fatalf("resumed Wait = %+v, %v; want %+v", res, err, c.want)
			}
			select {
			case <-p.Reaped():
			case <-time.After(10 * time.Second):
				t.Fatal("the resumed process did not reap the init")
			}
			if err := unix.Kill(pk.PID, 0); !errors.Is(err, unix.ESRCH) {
				t.Errorf("init %d still there after Reaped (kill: %v)", pk.PID, err)
			}
		})
	}
}
