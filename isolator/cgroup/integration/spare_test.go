package integration

import (
	"errors"
	"os"
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// A spare becomes a job's cgroup by rename in every hierarchy, with the
// job's limits; Holds tells a process in it from one outside; a spare
// left by an earlier run is removed by CleanupSpares, which touches no
// job's cgroup and kills nothing; Cleanup (jobs) does not take a spare for
// a stale job.
func TestSpareBecomesJobCgroup(t *testing.T) {
	p := requireRoot(t)
	if p.Version() != 1 {
		t.Skip("spares are for cgroup v1")
	}
	sp, err := p.NewSpare()
	if err != nil {
		t.Fatal(err)
	}
	dirs := sp.Dirs()
	if len(dirs) != 7 {
		t.Fatalf("spare dirs %v, want one per v1 hierarchy", dirs)
	}
	// Cleanup of stale jobs leaves spares alone.
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("Cleanup removed spare %s: %v", d, err)
		}
	}
	j, err := p.CreateFromSpare("from-spare", &jobletv1.Limits{MaxMemoryMb: 64, MaxPids: 32}, "", sp)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := j.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	}()
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("spare %s still there after the rename (%v)", d, err)
		}
	}
	if err := sp.Remove(); err != nil {
		t.Errorf("Remove of a used spare: %v", err)
	}
	paths := j.Paths()
	if read(t, paths["memory"], "memory.limit_in_bytes") != "67108864" || read(t, paths["pids"], "pids.max") != "32" {
		t.Error("limits not written to the renamed spare")
	}
	if _, err := p.CreateFromSpare("again", nil, "", sp); err == nil {
		t.Error("a used spare was used again")
	}
	pr := start(t, j, "sleep 30")
	if in, err := j.Holds(pr.cmd.Process.Pid); err != nil || !in {
		t.Errorf("Holds of a process in the job: %v %v", in, err)
	}
	if in, err := j.Holds(os.Getpid()); err != nil || in {
		t.Errorf("Holds of the test itself: %v %v", in, err)
	}
	if err := j.KillAll(); err != nil {
		t.Fatal(err)
	}
	_ = pr.cmd.Wait()

	stale, err := p.NewSpare()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CleanupSpares(); err != nil {
		t.Fatal(err)
	}
	for _, d := range stale.Dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale spare %s not removed (%v)", d, err)
		}
	}
	for c, d := range paths {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("CleanupSpares touched the job's %s cgroup: %v", c, err)
		}
	}
	if err := stale.Remove(); err != nil {
		t.Errorf("Remove of a spare already gone: %v", err)
	}
}
