package cli

import (
	"context"
	"fmt"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/client"
	"github.com/joblet-dev/joblet/rnx/render"
	"github.com/joblet-dev/joblet/rnx/termsafe"
)

// awaitScheduled tells the user when job id is a scheduled job that has not
// started, and reports whether rnx log should go on to read its output: a
// scheduled job has none yet, so only an explicit --follow waits for it to
// start (the server's log stream then waits for the job's first output).
func (a *app) awaitScheduled(ctx context.Context, conn *client.Conn, id string, follow bool) (bool, error) {
	job, err := a.status(ctx, conn, id, 0)
	if err != nil {
		return false, err
	}
	if job.GetState() != jobletv1.JobState_JOB_STATE_SCHEDULED {
		return true, nil
	}
	msg := fmt.Sprintf("rnx: job %s is scheduled for %s and has not started", termsafe.String(id), render.Time(job.GetScheduledTime()))
	if follow {
		msg += "; waiting for it to start"
	}
	_, err = fmt.Fprintln(a.env.Stderr, msg)
	return follow, err
}
