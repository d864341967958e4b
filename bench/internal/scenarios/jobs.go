package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Ended says whether a job state is final.
func Ended(s jobletv1.JobState) bool {
	switch s {
	case jobletv1.JobState_JOB_STATE_COMPLETED, jobletv1.JobState_JOB_STATE_FAILED,
		jobletv1.JobState_JOB_STATE_STOPPED, jobletv1.JobState_JOB_STATE_CANCELED:
		return true
	}
	return false
}

// RunToEnd starts spec and waits until the job's end is recorded: it
// follows the job's log until the stream ends (the job's end), then reads
// its status, waiting in case the record lags the stream.
func RunToEnd(ctx context.Context, c jobletv1.JobServiceClient, spec *jobletv1.JobSpec) (*jobletv1.Job, error) {
	resp, err := c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: spec})
	if err != nil {
		return nil, fmt.Errorf("RunJob: %w", err)
	}
	job := resp.GetJob()
	if Ended(job.GetState()) {
		return job, nil
	}
	return WaitEnd(ctx, c, job.GetId())
}

// WaitEnd follows job id's log to its end, then returns its final record.
func WaitEnd(ctx context.Context, c jobletv1.JobServiceClient, id string) (*jobletv1.Job, error) {
	stream, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id, Follow: true})
	if err != nil {
		return nil, fmt.Errorf("GetJobLogs %s: %w", id, err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("GetJobLogs %s: %w", id, err)
		}
	}
	return WaitRecorded(ctx, c, id)
}

// WaitRecorded waits for job id's end to be recorded and returns its final
// record, without reading its log: for a job whose log a client has already
// read to its end (a second read of a GiB would fall into the scenario's
// profile).
func WaitRecorded(ctx context.Context, c jobletv1.JobServiceClient, id string) (*jobletv1.Job, error) {
	for pause := 200 * time.Microsecond; ; pause = min(2*pause, 50*time.Millisecond) {
		// wait_ms: the server answers at the job's end, as rnx asks; a
		// build from before wait_ms answers at once and is polled.
		st, err := c.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: id, WaitMs: 30_000})
		if err != nil {
			return nil, fmt.Errorf("GetJobStatus %s: %w", id, err)
		}
		if Ended(st.GetJob().GetState()) {
			return st.GetJob(), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("job %s did not end: %w", id, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// CheckSuccess returns an error unless job completed with exit code 0.
func CheckSuccess(job *jobletv1.Job) error {
	if job.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED || job.GetExitCode() != 0 {
		return fmt.Errorf("job %s ended %v, exit code %d: %s", job.GetId(), job.GetState(), job.GetExitCode(), job.GetReason())
	}
	return nil
}

// StartLatency runs `/bin/true` n times one after the other in network and
// times each from RunJob to its end being recorded. A few unmeasured runs
// come first, so connection set-up and first-use costs are not counted.
func StartLatency(ctx context.Context, c jobletv1.JobServiceClient, network string, n int) ([]time.Duration, error) {
	spec := &jobletv1.JobSpec{Command: "/bin/true", Network: network}
	var out []time.Duration
	for i := -3; i < n; i++ {
		t0 := time.Now()
		job, err := RunToEnd(ctx, c, spec)
		d := time.Since(t0)
		if err != nil {
			return nil, err
		}
		if err := CheckSuccess(job); err != nil {
			return nil, err
		}
		if i >= 0 {
			out = append(out, d)
		}
	}
	return out, nil
}
