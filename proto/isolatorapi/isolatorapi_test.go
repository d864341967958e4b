package isolatorapi

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// starter answers StartScheduled only, and records what it was given.
type starter struct {
	Isolator
	id    string
	delay time.Duration
}

func (s *starter) StartScheduled(_ context.Context, id string, delay time.Duration) (*jobletv1.Job, error) {
	s.id, s.delay = id, delay
	if id == "canceled" {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "job %s was canceled", id)
	}
	return &jobletv1.Job{Id: id, State: jobletv1.JobState_JOB_STATE_RUNNING}, nil
}

func TestStartScheduledAcrossTheWire(t *testing.T) {
	l := bufconn.Listen(1 << 20)
	impl := &starter{}
	s := grpc.NewServer()
	Register(s, impl)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := NewClient(cc)

	j, err := c.StartScheduled(context.Background(), "7", 2100*time.Millisecond)
	if err != nil || j.GetId() != "7" || j.GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("StartScheduled = %v, %v", j, err)
	}
	if impl.id != "7" || impl.delay != 2100*time.Millisecond {
		t.Fatalf("the server got %q, %v", impl.id, impl.delay)
	}
	if _, err := c.StartScheduled(context.Background(), "canceled", 0); !errors.Is(err, errdefs.ErrFailedPrecondition) ||
		err.Error() != "job canceled was canceled" {
		t.Fatalf("error across the wire: %v", err)
	}
}
