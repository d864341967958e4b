package jobs

import (
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

func TestStorageCapsReachTheRunner(t *testing.T) {
	runner := &specRunner{}
	work, tmp := Storage{MaxBytes: 1 << 20, MaxInodes: 100}, Storage{MaxBytes: 2 << 20, MaxInodes: 200}
	f := newFixture(t, func(o *Options) { o.Runner, o.Workspace, o.Tmp = runner, work, tmp })

	f.wait(f.run("true").GetId())
	if s := runner.last(); s.Work != work || s.Tmp != tmp {
		t.Errorf("runner got /work cap %+v and /tmp cap %+v, want %+v and %+v", s.Work, s.Tmp, work, tmp)
	}
	// An IO limit applies to the workspace's disk: /work stays there.
	j, err := runWith(t, f, &jobletv1.Limits{MaxIoBps: 1 << 20}, "true")
	if err != nil {
		t.Fatal(err)
	}
	f.wait(j.GetId())
	if s := runner.last(); s.Work != (Storage{}) || s.Tmp != tmp {
		t.Errorf("with an IO limit: /work cap %+v and /tmp cap %+v, want none and %+v", s.Work, s.Tmp, tmp)
	}
}
