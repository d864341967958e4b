// Package isolatorapi is the isolator's Go interface, with the gRPC client
// that implements it over the isolator's socket and the gRPC server that
// wraps an implementation. Callers never see the wire types of the internal
// API, and errors keep their errdefs kind across the socket.
package isolatorapi

import (
	"context"
	"math"
	"time"

	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/errdefs"
	isolatorv1 "github.com/joblet-dev/joblet/proto/gen/isolator/v1"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Isolator owns the job registry and runs jobs.
type Isolator interface {
	// Run records and starts a job. The spec must already be valid; the
	// isolator validates it again.
	Run(ctx context.Context, spec *jobletv1.JobSpec) (*jobletv1.Job, error)
	// Get returns a job's record, or an errdefs.ErrNotFound error.
	Get(ctx context.Context, id string) (*jobletv1.Job, error)
	// Wait returns a job's record once the job has ended, or as it is
	// when max has passed or ctx is done, whichever comes first; an
	// unknown job is an errdefs.ErrNotFound error.
	Wait(ctx context.Context, id string, max time.Duration) (*jobletv1.Job, error)
	// List returns every job's record, oldest first.
	List(ctx context.Context) ([]*jobletv1.Job, error)
	// Stop stops a job and returns its record once it has ended. Stopping an
	// ended job returns its record unchanged.
	Stop(ctx context.Context, id string) (*jobletv1.Job, error)
	// StartScheduled starts a SCHEDULED job that has fallen due, delay
	// after its due time; the scheduler calls it. It is idempotent by job
	// id: a job already started or ended is a success that changes nothing.
	// A canceled job is an errdefs.ErrFailedPrecondition error, an unknown
	// one errdefs.ErrNotFound; ErrUnavailable or ErrResourceExhausted mean
	// "not now, try again". It returns once the start is under way.
	StartScheduled(ctx context.Context, id string, delay time.Duration) (*jobletv1.Job, error)
}

// NewClient returns an Isolator that calls the isolator over cc.
func NewClient(cc grpc.ClientConnInterface) Isolator {
	return client{isolatorv1.NewIsolatorClient(cc)}
}

type client struct{ c isolatorv1.IsolatorClient }

func (c client) Run(ctx context.Context, spec *jobletv1.JobSpec) (*jobletv1.Job, error) {
	r, err := c.c.Run(ctx, &isolatorv1.RunRequest{Spec: spec})
	return r.GetJob(), errdefs.FromGRPC(err)
}

func (c client) Get(ctx context.Context, id string) (*jobletv1.Job, error) {
	r, err := c.c.Get(ctx, &isolatorv1.GetRequest{Id: id})
	return r.GetJob(), errdefs.FromGRPC(err)
}

func (c client) Wait(ctx context.Context, id string, max time.Duration) (*jobletv1.Job, error) {
	ms := max.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	r, err := c.c.Get(ctx, &isolatorv1.GetRequest{Id: id, WaitMs: uint32(min(ms, math.MaxUint32))})
	return r.GetJob(), errdefs.FromGRPC(err)
}

func (c client) List(ctx context.Context) ([]*jobletv1.Job, error) {
	r, err := c.c.List(ctx, &isolatorv1.ListRequest{})
	return r.GetJobs(), errdefs.FromGRPC(err)
}

func (c client) Stop(ctx context.Context, id string) (*jobletv1.Job, error) {
	r, err := c.c.Stop(ctx, &isolatorv1.StopRequest{Id: id})
	return r.GetJob(), errdefs.FromGRPC(err)
}

func (c client) StartScheduled(ctx context.Context, id string, delay time.Duration) (*jobletv1.Job, error) {
	r, err := c.c.StartScheduled(ctx, &isolatorv1.StartScheduledRequest{Id: id, DelayMs: delay.Milliseconds()})
	return r.GetJob(), errdefs.FromGRPC(err)
}

// Register serves impl on s.
func Register(s grpc.ServiceRegistrar, impl Isolator) {
	isolatorv1.RegisterIsolatorServer(s, server{impl: impl})
}

type server struct {
	isolatorv1.UnimplementedIsolatorServer
	impl Isolator
}

func (s server) Run(ctx context.Context, r *isolatorv1.RunRequest) (*isolatorv1.JobResponse, error) {
	j, err := s.impl.Run(ctx, r.GetSpec())
	return &isolatorv1.JobResponse{Job: j}, errdefs.ToGRPC(err)
}

func (s server) Get(ctx context.Context, r *isolatorv1.GetRequest) (*isolatorv1.JobResponse, error) {
	var j *jobletv1.Job
	var err error
	if ms := r.GetWaitMs(); ms > 0 {
		j, err = s.impl.Wait(ctx, r.GetId(), time.Duration(ms)*time.Millisecond)
	} else {
		j, err = s.impl.Get(ctx, r.GetId())
	}
	return &isolatorv1.JobResponse{Job: j}, errdefs.ToGRPC(err)
}

func (s server) List(ctx context.Context, _ *isolatorv1.ListRequest) (*isolatorv1.ListResponse, error) {
	jobs, err := s.impl.List(ctx)
	return &isolatorv1.ListResponse{Jobs: jobs}, errdefs.ToGRPC(err)
}

func (s server) Stop(ctx context.Context, r *isolatorv1.StopRequest) (*isolatorv1.JobResponse, error) {
	j, err := s.impl.Stop(ctx, r.GetId())
	return &isolatorv1.JobResponse{Job: j}, errdefs.ToGRPC(err)
}

func (s server) StartScheduled(ctx context.Context, r *isolatorv1.StartScheduledRequest) (*isolatorv1.JobResponse, error) {
	j, err := s.impl.StartScheduled(ctx, r.GetId(), time.Duration(r.GetDelayMs())*time.Millisecond)
	return &isolatorv1.JobResponse{Job: j}, errdefs.ToGRPC(err)
}
