package client

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// The calls of every command reach every message of the public API, each
// set up once, the well-known Timestamp too; every method name rnx uses is
// found.
func TestWarmCoversTheAPI(t *testing.T) {
	fd := jobletv1.File_joblet_v1_joblet_proto
	got := warmMethods(fd, []string{
		jobletv1.JobService_RunJob_FullMethodName,
		jobletv1.JobService_RunJobWithUploads_FullMethodName,
		jobletv1.JobService_GetJobStatus_FullMethodName,
		jobletv1.JobService_ListJobs_FullMethodName,
		jobletv1.JobService_StopJob_FullMethodName,
		jobletv1.JobService_GetJobLogs_FullMethodName,
		jobletv1.NetworkService_CreateNetwork_FullMethodName,
		jobletv1.NetworkService_ListNetworks_FullMethodName,
		jobletv1.NetworkService_RemoveNetwork_FullMethodName,
	})
	want := []protoreflect.FullName{"google.protobuf.Timestamp"}
	for i := range fd.Messages().Len() {
		want = append(want, fd.Messages().Get(i).FullName())
	}
	slices.Sort(want)
	if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, want) {
		t.Errorf("warmed %v\nwant %v", sorted, want)
	}
}

// One call's messages, in the order they are needed; names that are not
// methods of the API are skipped.
func TestWarmOneCall(t *testing.T) {
	fd := jobletv1.File_joblet_v1_joblet_proto
	got := warmMethods(fd, []string{"/joblet.v1.JobService/Nope", "junk", "/x.Y/Z", jobletv1.JobService_GetJobStatus_FullMethodName})
	want := []protoreflect.FullName{"joblet.v1.GetJobStatusRequest", "joblet.v1.GetJobStatusResponse",
		"joblet.v1.Job", "google.protobuf.Timestamp", "joblet.v1.Limits", "joblet.v1.Usage"}
	if !slices.Equal(got, want) {
		t.Errorf("warmed %v, want %v", got, want)
	}
}

// The background set-up races the first real use of the same types in a
// process where nothing is set up yet (a fresh copy of this test binary):
// under -race this checks that the protobuf runtime's locks cover it, and
// every message still round-trips.
func TestWarmRacesFirstUse(t *testing.T) {
	if os.Getenv("RNX_WARM_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWarmRacesFirstUse$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "RNX_WARM_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestWarmRacesFirstUse") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	ts := timestamppb.New(time.Date(2026, 11, 27, 11, 0, 0, 5, time.UTC))
	job := &jobletv1.Job{
		Id: "7", Command: "echo", Args: []string{"hi"}, State: jobletv1.JobState_JOB_STATE_COMPLETED,
		CreateTime: ts, StartTime: ts, EndTime: ts, ExitCode: 3,
		Limits: &jobletv1.Limits{MaxCpuPercent: 150, MaxMemoryMb: 64, CpuCores: "0-1"}, Usage: &jobletv1.Usage{CpuTimeUsec: 1200, MemoryPeakBytes: 1 << 20},
	}
	Warm(jobletv1.JobService_GetJobStatus_FullMethodName)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			b, err := proto.Marshal(&jobletv1.GetJobStatusResponse{Job: job})
			if err != nil {
				t.Error(err)
				return
			}
			var back jobletv1.GetJobStatusResponse
			if err := proto.Unmarshal(b, &back); err != nil {
				t.Error(err)
				return
			}
			if !proto.Equal(back.GetJob(), job) {
				t.Errorf("round trip: %v, want %v", back.GetJob(), job)
			}
		})
	}
	wg.Wait()
}
