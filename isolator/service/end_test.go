package service

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// The isolator releases what a job held (its network here) as soon as its
// command ended, while the shim still waits for logd to complete the log,
// and records the end only after that. An isolator that stops in between
// (the job's end is not recorded yet) leaves the end to its shim's result
// file: the next isolator records the job with its real exit code, and
// the log is whole.
func TestIsolatorGoneBetweenTheCommandsEndAndTheRecord(t *testing.T) {
	s := startSuite(t, restartConfig(t))
	hold := make(chan struct{})
	s.logd.mu.Lock()
	s.logd.holdEOF = hold
	s.logd.mu.Unlock()
	held := true
	defer func() {
		if held {
			close(hold)
		}
	}()
	j := s.run("sh", "-c", "echo a; echo b; exit 7")
	id := j.GetId()
	shimPID := s.shimPID(id)

	// The job's network is released at the command's end, before the log
	// is complete.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.netd.mu.Lock()
		detached := s.netd.detached[id]
		s.netd.mu.Unlock()
		if detached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job's network is still attached while logd holds its log open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	got, err := s.client.Get(context.Background(), id)
	if err != nil || got.GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("recorded before its log is complete: %v %v", got, err)
	}
	if rec := s.record(id); rec.Job.GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("record on disk before the log is complete: %v", rec.Job)
	}

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	held = false
	close(hold)
	waitGone(t, shimPID)
	result := filepath.Join(s.cfg.StateDir("isolator"), "shims", id+".json")
	if _, err := os.Stat(result); err != nil {
		t.Fatalf("no result left by the shim for the next isolator: %v", err)
	}
	s.restartIsolator()
	j, out := s.ended(id)
	if j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetExitCode() != 7 || out != "a\nb\n" {
		t.Errorf("record %v, output %q", j, out)
	}
	waitRemoved(t, result)
}
