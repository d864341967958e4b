package jobs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/testkit/smalldisk"
)

// With the isolator's state directory on a full disk, a new job is refused
// with a clear ResourceExhausted error and leaves nothing behind; the
// records already saved are intact and still answered; once there is space
// again, jobs run and are recorded as before.
func TestStateDiskFull(t *testing.T) {
	dir, ok := smalldisk.Dir(t, "512k")
	if !ok {
		return
	}
	f := newFixture(t, func(o *Options) { o.StateDir = dir })
	f.dir = dir
	first := f.run("echo", "one")
	if end := f.wait(first.GetId()); end.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("first job %v", end)
	}
	saved := f.stored(first.GetId()).Job
	journal, err := os.ReadFile(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}

	filler := smalldisk.Fill(t, dir)
	for range 2 { // refused each time, the same way
		_, err = f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "echo", Args: []string{"two"}})
		if !errors.Is(err, errdefs.ErrResourceExhausted) ||
			!strings.HasPrefix(err.Error(), "no space left on the server's state disk (recording the job)") {
			t.Fatalf("run on a full disk: %v, want a clear ResourceExhausted", err)
		}
	}
	if got := f.stored(first.GetId()).Job; !proto.Equal(got, saved) {
		t.Errorf("saved record changed on a full disk:\n%v\nwant:\n%v", got, saved)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "journal")); !bytes.Equal(got, journal) {
		t.Errorf("the journal changed on a full disk: %d bytes, was %d", len(got), len(journal))
	}
	if j, err := f.reg.Get(context.Background(), first.GetId()); err != nil || j.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED {
		t.Errorf("get on a full disk: %v %v", j, err)
	}
	if js, err := f.reg.List(context.Background()); err != nil || len(js) != 1 {
		t.Errorf("list on a full disk: %v %v", js, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "journal?*")); len(m) != 0 {
		t.Errorf("left next to the journal: %v", m)
	}
	f.assertNoDirs("2")
	// The record is written while the job's cgroup is made: a refused
	// job's cgroup, if it got one, is gone.
	for _, id := range []string{"2", "3"} {
		if ev := f.cg.eventsOf(id); len(ev) > 0 && ev[len(ev)-1] != "destroy" {
			t.Errorf("refused job %s left its cgroup: %v", id, ev)
		}
	}
	f.reg.mu.Lock()
	if f.reg.running != 0 {
		t.Errorf("%d running slots taken by refused jobs", f.reg.running)
	}
	f.reg.mu.Unlock()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	next := f.run("echo", "three")
	if end := f.wait(next.GetId()); end.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job after recovery %v", end)
	}
	if out := f.logd.stdoutOf(next.GetId()); out != "three\n" {
		t.Errorf("output %q", out)
	}
}
