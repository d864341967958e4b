package scenarios

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// LogRun is one run of a job writing a large output.
type LogRun struct {
	Wall time.Duration // what the client saw: rnx start to exit
	Job  time.Duration // the job's own run time, from its record
}

func writer(bytes int64) []string {
	return []string{"head", "-c", strconv.FormatInt(bytes, 10), "/dev/zero"}
}

// AttachedLog runs a job that writes bytes to stdout with an attached
// `rnx run` whose stdout is /dev/null.
func (r RNX) AttachedLog(ctx context.Context, c jobletv1.JobServiceClient, bytes int64) (LogRun, error) {
	wall, id, err := r.Run(nil, writer(bytes)...)
	if err != nil {
		return LogRun{}, err
	}
	job, err := WaitRecorded(ctx, c, id) // rnx read the log to its end
	if err != nil {
		return LogRun{}, err
	}
	if err := CheckSuccess(job); err != nil {
		return LogRun{}, err
	}
	return LogRun{Wall: wall, Job: jobDuration(job)}, nil
}

// PipeDrain times the same bytes going through a plain pipe into /dev/null,
// with no suite in between.
func PipeDrain(bytes int64) (time.Duration, error) {
	cmd := exec.Command("sh", "-c", strings.Join(writer(bytes), " ")+" | cat >/dev/null")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pipe drain: %w: %s", err, out)
	}
	return time.Since(t0), nil
}

// Followers starts a job writing bytes (through the API, detached) and at
// once n `rnx log JOB` processes following it into /dev/null. It returns
// the job's record and each follower's time from the job's creation to its
// exit.
func (r RNX) Followers(ctx context.Context, c jobletv1.JobServiceClient, bytes int64, n int) (LogRun, []time.Duration, error) {
	argv := writer(bytes)
	t0 := time.Now()
	resp, err := c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: argv[0], Args: argv[1:]}})
	if err != nil {
		return LogRun{}, nil, fmt.Errorf("RunJob: %w", err)
	}
	id := resp.GetJob().GetId()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return LogRun{}, nil, err
	}
	defer devNull.Close()
	durs := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := r.command("log", id)
			cmd.Stdout = devNull
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("rnx log %s: %w: %s", id, err, strings.TrimSpace(stderr.String()))
			}
			durs[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			return LogRun{}, nil, err
		}
	}
	job, err := WaitRecorded(ctx, c, id) // the followers read the log to its end
	if err != nil {
		return LogRun{}, nil, err
	}
	if err := CheckSuccess(job); err != nil {
		return LogRun{}, nil, err
	}
	return LogRun{Wall: wall, Job: jobDuration(job)}, durs, nil
}

func jobDuration(job *jobletv1.Job) time.Duration {
	return job.GetEndTime().AsTime().Sub(job.GetStartTime().AsTime())
}
