package service

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/isolator/store"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// What an isolator SIGKILLed while a scheduled job was starting leaves: the
// RUNNING record (saved first), its workspace and root mount point, and no
// shim, init or cgroup. The next isolator runs the job, in its real
// sandbox; a job that had its cgroup already is ended as lost (its
// processes, if any, are killed with the cgroup).
func TestScheduledJobCutShortStartsAgain(t *testing.T) {
	cfg := testConfig(t)
	state := cfg.StateDir("isolator")
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(-time.Second)
	var ids []string
	for range 2 {
		id, err := st.NextID()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		for _, d := range []string{filepath.Join(state, "work", id), filepath.Join(state, "roots", id)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		rec := &jobletv1.Job{Id: id, Command: "sh", Args: []string{"-c", "echo ran in $(cat /etc/hostname)"}, Hostname: "job-" + id,
			State: jobletv1.JobState_JOB_STATE_RUNNING, Network: "none", Limits: &jobletv1.Limits{},
			ScheduleInput: "1s", ScheduledTime: timestamppb.New(due), CreateTime: timestamppb.New(due.Add(-time.Second))}
		if err := st.Save(store.Record{Job: rec}); err != nil {
			t.Fatal(err)
		}
	}
	startedAgain, hadCgroup := ids[0], ids[1]
	// The second had its cgroup made when the isolator died.
	cg, err := cgroup.NewParent(zerolog.Nop(), cgroup.Options{Name: cgroupName(cfg), Driver: cfg.Joblet.CgroupDriver, Slice: cfg.Joblet.CgroupSlice})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cg.Remove() })
	if _, err := cg.Create(hadCgroup, &jobletv1.Limits{}, filepath.Join(state, "work", hadCgroup)); err != nil {
		t.Fatal(err)
	}

	s := startSuite(t, cfg)
	j, out := s.ended(startedAgain)
	if j.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED || j.GetReason() != jobs.ReasonStartedAgain || out != "ran in job-"+startedAgain+"\n" {
		t.Fatalf("the job cut short: %v, output %q", j, out)
	}
	if j, _ := s.ended(hadCgroup); j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetReason() != jobs.ReasonRestarted {
		t.Fatalf("the job with a cgroup: %v", j)
	}
}
