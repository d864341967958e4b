package cli

import (
	"slices"
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/upload"
)

// The calls a run warms up are the ones it makes, in order.
func TestRunCalls(t *testing.T) {
	const (
		run     = jobletv1.JobService_RunJob_FullMethodName
		uploads = jobletv1.JobService_RunJobWithUploads_FullMethodName
		logs    = jobletv1.JobService_GetJobLogs_FullMethodName
		status  = jobletv1.JobService_GetJobStatus_FullMethodName
	)
	plan := &upload.Plan{}
	for _, tc := range []struct {
		plan   *upload.Plan
		detach bool
		want   []string
	}{
		{nil, false, []string{run, logs, status}},
		{nil, true, []string{run}},
		{plan, false, []string{uploads, logs, status}},
		{plan, true, []string{uploads}},
	} {
		if got := runCalls(tc.plan, tc.detach); !slices.Equal(got, tc.want) {
			t.Errorf("runCalls(plan %v, detach %v) = %v, want %v", tc.plan != nil, tc.detach, got, tc.want)
		}
	}
}
