package cli

import (
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestJobExit(t *testing.T) {
	started := timestamppb.New(epoch)
	for _, tc := range []struct {
		name string
		job  *jobletv1.Job
		code int
		note string
	}{
		{"success", &jobletv1.Job{Id: "1", State: jobletv1.JobState_JOB_STATE_COMPLETED, StartTime: started}, 0, ""},
		{"exit 3 is silent", &jobletv1.Job{Id: "1", State: jobletv1.JobState_JOB_STATE_FAILED, StartTime: started, ExitCode: 3, Reason: "exit status 3"}, 3, ""},
		{"signal", &jobletv1.Job{Id: "1", State: jobletv1.JobState_JOB_STATE_STOPPED, StartTime: started, Signal: 9, ExitCode: 137}, 137, ""},
		{"signal with reason", &jobletv1.Job{Id: "2", State: jobletv1.JobState_JOB_STATE_FAILED, StartTime: started, Signal: 9, Reason: "out of memory"}, 137, "job 2 was killed by signal 9: out of memory"},
		{"not started", &jobletv1.Job{Id: "3", State: jobletv1.JobState_JOB_STATE_FAILED, Reason: "no such file\x1b"}, 127, "job 3 failed: no such file^["},
		{"failed without code", &jobletv1.Job{Id: "4", State: jobletv1.JobState_JOB_STATE_FAILED, StartTime: started}, 127, "job 4 failed: no reason given"},
		{"canceled", &jobletv1.Job{Id: "5", State: jobletv1.JobState_JOB_STATE_CANCELED}, 1, "job 5 was canceled"},
		{"absurd code", &jobletv1.Job{Id: "6", State: jobletv1.JobState_JOB_STATE_COMPLETED, StartTime: started, ExitCode: 1000}, 1, ""},
	} {
		code, note := jobExit(tc.job)
		if code != tc.code || note != tc.note {
			t.Errorf("%s: jobExit = %d, %q; want %d, %q", tc.name, code, note, tc.code, tc.note)
		}
	}
}

func TestStopMessage(t *testing.T) {
	for state, want := range map[jobletv1.JobState]string{
		jobletv1.JobState_JOB_STATE_STOPPED:   "Job 9 stopped",
		jobletv1.JobState_JOB_STATE_CANCELED:  "Job 9 canceled",
		jobletv1.JobState_JOB_STATE_COMPLETED: "Job 9 had already ended (COMPLETED)",
		jobletv1.JobState_JOB_STATE_RUNNING:   "Job 9 is stopping (RUNNING)",
	} {
		if got := stopMessage(&jobletv1.Job{Id: "9", State: state}); got != want {
			t.Errorf("stopMessage(%v) = %q, want %q", state, got, want)
		}
	}
}
