package service

import (
	"context"
	"time"

	"github.com/joblet-dev/joblet/proto/isolatorapi"
)

// isolatorStarter is the production Starter: the isolator, over its socket.
// The isolator's StartScheduled is idempotent by job id and returns the
// error kinds Starter documents, so the loop's retry and drop rules apply
// to its answers as they are.
type isolatorStarter struct{ iso isolatorapi.Isolator }

func (s isolatorStarter) Start(ctx context.Context, jobID string, delay time.Duration) error {
	_, err := s.iso.StartScheduled(ctx, jobID, delay)
	return err
}
