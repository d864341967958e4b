package service

import (
	"context"
	"errors"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// Starter starts a job whose time has come. The isolator implements it: it
// owns the job's record, written as SCHEDULED when the job was accepted.
//
// Start must be idempotent by job id: starting a job that has already
// started (or ended) is a success. The scheduler removes an entry from its
// persisted queue only after Start returned, so a crash between the two, or
// a Start whose reply was lost, makes the scheduler call Start again for the
// same job after it restarts; idempotency is what keeps that job from
// running twice.
//
// delay is how late the start is (now minus the due time): about zero
// normally, the downtime for a job that fell due while the scheduler was
// down. The isolator records it in the job's status.
//
// Errors, by kind:
//   - errdefs.ErrNotFound (no such job), errdefs.ErrFailedPrecondition (the
//     job is not SCHEDULED any more, e.g. CANCELED), errdefs.ErrInvalidArgument,
//     errdefs.ErrAlreadyExists, errdefs.ErrPermissionDenied: permanent; the
//     entry is dropped and the drop is logged.
//   - anything else (errdefs.ErrUnavailable while the isolator is down,
//     errdefs.ErrResourceExhausted, a timeout, an internal error): transient;
//     the entry stays queued and is retried with backoff.
type Starter interface {
	Start(ctx context.Context, jobID string, delay time.Duration) error
}

// permanent are the error kinds that retrying cannot fix.
var permanent = []error{
	errdefs.ErrNotFound, errdefs.ErrFailedPrecondition, errdefs.ErrInvalidArgument,
	errdefs.ErrAlreadyExists, errdefs.ErrPermissionDenied,
}

func isPermanent(err error) bool {
	for _, k := range permanent {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
