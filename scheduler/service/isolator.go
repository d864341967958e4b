package service

import (
	"context"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
)

// isolatorStarter is the production Starter: the isolator, over its socket.
//
// NOT WIRED YET. The isolator's API has no call to start a job it recorded
// as SCHEDULED. When it gains one — StartScheduled(ctx, id, delay),
// idempotent by job id, with the error kinds Starter documents — Start's
// body becomes
//
//	return s.iso.StartScheduled(ctx, jobID, delay)
//
// Until then Start reports the isolator as unavailable, so due jobs stay
// queued and are retried with backoff: none is lost, none is dropped, and
// none runs.
type isolatorStarter struct{ iso isolatorapi.Isolator }

func (s isolatorStarter) Start(context.Context, string, time.Duration) error {
	return errdefs.Errorf(errdefs.ErrUnavailable, "the isolator cannot start scheduled jobs yet")
}
