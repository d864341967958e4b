package service

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
)

// recordingIsolator records StartScheduled calls and answers with err.
type recordingIsolator struct {
	isolatorapi.Isolator // only StartScheduled is called
	id                   string
	delay                time.Duration
	err                  error
}

func (r *recordingIsolator) StartScheduled(_ context.Context, id string, delay time.Duration) (*jobletv1.Job, error) {
	r.id, r.delay = id, delay
	if r.err != nil {
		return nil, r.err
	}
	return &jobletv1.Job{Id: id, State: jobletv1.JobState_JOB_STATE_RUNNING}, nil
}

// The production Starter hands the id and the delay to the isolator and
// gives back its error with its kind, which decides retry or drop.
func TestIsolatorStarter(t *testing.T) {
	iso := &recordingIsolator{}
	s := isolatorStarter{iso: iso}
	if err := s.Start(context.Background(), "7", 2100*time.Millisecond); err != nil || iso.id != "7" || iso.delay != 2100*time.Millisecond {
		t.Fatalf("Start = %v; isolator saw %q, %v", err, iso.id, iso.delay)
	}
	for _, kind := range []error{errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable} {
		iso.err = errdefs.Errorf(kind, "no")
		if err := s.Start(context.Background(), "8", 0); !errors.Is(err, kind) || isPermanent(err) != (kind == errdefs.ErrFailedPrecondition) {
			t.Errorf("isolator error %v: Start = %v", kind, err)
		}
	}
}
