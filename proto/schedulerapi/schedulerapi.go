// Package schedulerapi is the scheduler's Go interface, with the gRPC client
// that implements it over the scheduler's socket and the gRPC server that
// wraps an implementation. Callers never see the wire types of the internal
// API, and errors keep their errdefs kind across the socket.
package schedulerapi

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/joblet-dev/joblet/proto/errdefs"
	schedulerv1 "github.com/joblet-dev/joblet/proto/gen/scheduler/v1"
)

// Scheduler owns the timing of scheduled jobs: a persisted queue, and the
// hand-off of each job to the isolator when it falls due.
type Scheduler interface {
	// Schedule queues jobID to start at the time input names (a delay such
	// as "30s", "1h30m", or an RFC3339 time). A relative delay is fixed to an
	// instant now. A bad input is an errdefs.ErrInvalidArgument error with a
	// message for the user. Scheduling a queued job again with the same input
	// returns the queued entry; with another input, errdefs.ErrAlreadyExists.
	Schedule(ctx context.Context, jobID, input string) (Entry, error)
	// Cancel takes jobID off the queue and reports whether it was queued.
	// Cancelling a job that is not queued is not an error.
	Cancel(ctx context.Context, jobID string) (pending bool, err error)
	// List returns the queue, soonest first and, among entries due at the
	// same instant, in submission order.
	List(ctx context.Context) ([]Entry, error)
}

// Entry is one job waiting to start.
type Entry struct {
	JobID string
	Input string    // the schedule as written
	Due   time.Time // when the job starts
	Seq   uint64    // submission order
}

func toProto(e Entry) *schedulerv1.Entry {
	return &schedulerv1.Entry{JobId: e.JobID, Input: e.Input, DueTime: timestamppb.New(e.Due), Seq: e.Seq}
}

func fromProto(e *schedulerv1.Entry) Entry {
	if e == nil {
		return Entry{}
	}
	var due time.Time
	if e.GetDueTime() != nil {
		due = e.GetDueTime().AsTime()
	}
	return Entry{JobID: e.GetJobId(), Input: e.GetInput(), Due: due, Seq: e.GetSeq()}
}

// NewClient returns a Scheduler that calls the scheduler over cc.
func NewClient(cc grpc.ClientConnInterface) Scheduler {
	return client{schedulerv1.NewSchedulerClient(cc)}
}

type client struct{ c schedulerv1.SchedulerClient }

func (c client) Schedule(ctx context.Context, jobID, input string) (Entry, error) {
	r, err := c.c.Schedule(ctx, &schedulerv1.ScheduleRequest{JobId: jobID, Input: input})
	if err != nil {
		return Entry{}, errdefs.FromGRPC(err)
	}
	return fromProto(r.GetEntry()), nil
}

func (c client) Cancel(ctx context.Context, jobID string) (bool, error) {
	r, err := c.c.Cancel(ctx, &schedulerv1.CancelRequest{JobId: jobID})
	return r.GetPending(), errdefs.FromGRPC(err)
}

func (c client) List(ctx context.Context) ([]Entry, error) {
	r, err := c.c.List(ctx, &schedulerv1.ListRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make([]Entry, 0, len(r.GetEntries()))
	for _, e := range r.GetEntries() {
		out = append(out, fromProto(e))
	}
	return out, nil
}

// Register serves impl on s.
func Register(s grpc.ServiceRegistrar, impl Scheduler) {
	schedulerv1.RegisterSchedulerServer(s, server{impl: impl})
}

type server struct {
	schedulerv1.UnimplementedSchedulerServer
	impl Scheduler
}

func (s server) Schedule(ctx context.Context, r *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	e, err := s.impl.Schedule(ctx, r.GetJobId(), r.GetInput())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &schedulerv1.ScheduleResponse{Entry: toProto(e)}, nil
}

func (s server) Cancel(ctx context.Context, r *schedulerv1.CancelRequest) (*schedulerv1.CancelResponse, error) {
	pending, err := s.impl.Cancel(ctx, r.GetJobId())
	return &schedulerv1.CancelResponse{Pending: pending}, errdefs.ToGRPC(err)
}

func (s server) List(ctx context.Context, _ *schedulerv1.ListRequest) (*schedulerv1.ListResponse, error) {
	es, err := s.impl.List(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	out := make([]*schedulerv1.Entry, 0, len(es))
	for _, e := range es {
		out = append(out, toProto(e))
	}
	return &schedulerv1.ListResponse{Entries: out}, nil
}
