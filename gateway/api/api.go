// Package api is the gateway's JobService and NetworkService: it validates
// each request and forwards it to the helper that owns the answer, through
// the helpers' Go interfaces. It holds no state of its own.
package api

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/logging"
)

// Server implements jobletv1.JobServiceServer.
type Server struct {
	// Unsafe rather than Unimplemented: a new RPC in the proto must fail to
	// compile here instead of silently answering "unimplemented".
	jobletv1.UnsafeJobServiceServer

	iso  isolatorapi.Isolator
	logs logdapi.Logd
	// logdConn, when set, is the connection logs calls logd over; GetJobLogs
	// then forwards logd's chunks without decoding them.
	logdConn grpc.ClientConnInterface
}

// Option changes a Server.
type Option func(*Server)

// WithLogdConn makes GetJobLogs read from logd over cc directly and pass
// logd's chunks through as they arrived (see Codec, which the gRPC server
// must use). cc must be the connection behind the Logd given to New.
func WithLogdConn(cc grpc.ClientConnInterface) Option {
	return func(s *Server) { s.logdConn = cc }
}

// New returns a JobService that forwards to iso and logs.
func New(iso isolatorapi.Isolator, logs logdapi.Logd, opts ...Option) *Server {
	s := &Server{iso: iso, logs: logs}
	for _, o := range opts {
		o(s)
	}
	return s
}

var _ jobletv1.JobServiceServer = (*Server)(nil)

// RunJob implements jobletv1.JobServiceServer.
func (s *Server) RunJob(ctx context.Context, r *jobletv1.RunJobRequest) (*jobletv1.RunJobResponse, error) {
	if err := ValidateSpec(r.GetSpec()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	j, err := s.iso.Run(ctx, r.GetSpec())
	if err != nil {
		return nil, userError(ctx, "isolator", err)
	}
	logging.From(ctx).Info().Str(logging.KeyJobID, j.GetId()).Msg("job started")
	return &jobletv1.RunJobResponse{Job: j}, nil
}

// statusWaitMax caps how long a GetJobStatus waits for the job's end (its
// wait_ms): the client asks again, so no call stays open for a job's
// whole life.
const statusWaitMax = 30 * time.Second

// GetJobStatus implements jobletv1.JobServiceServer.
func (s *Server) GetJobStatus(ctx context.Context, r *jobletv1.GetJobStatusRequest) (*jobletv1.GetJobStatusResponse, error) {
	if err := ValidateID(r.GetId()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	var j *jobletv1.Job
	var err error
	if ms := r.GetWaitMs(); ms > 0 {
		j, err = s.iso.Wait(ctx, r.GetId(), min(time.Duration(ms)*time.Millisecond, statusWaitMax))
	} else {
		j, err = s.iso.Get(ctx, r.GetId())
	}
	if err != nil {
		return nil, userError(ctx, "isolator", err)
	}
	return &jobletv1.GetJobStatusResponse{Job: j}, nil
}

// ListJobs implements jobletv1.JobServiceServer.
func (s *Server) ListJobs(ctx context.Context, _ *jobletv1.ListJobsRequest) (*jobletv1.ListJobsResponse, error) {
	jobs, err := s.iso.List(ctx)
	if err != nil {
		return nil, userError(ctx, "isolator", err)
	}
	return &jobletv1.ListJobsResponse{Jobs: jobs}, nil
}

// StopJob implements jobletv1.JobServiceServer.
func (s *Server) StopJob(ctx context.Context, r *jobletv1.StopJobRequest) (*jobletv1.StopJobResponse, error) {
	if err := ValidateID(r.GetId()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	j, err := s.iso.Stop(ctx, r.GetId())
	if err != nil {
		return nil, userError(ctx, "isolator", err)
	}
	logging.From(ctx).Info().Str(logging.KeyJobID, j.GetId()).Msg("job stopped")
	return &jobletv1.StopJobResponse{Job: j}, nil
}

// GetJobLogs implements jobletv1.JobServiceServer. The job must exist in the
// isolator's registry; its output then comes from logd, which ends a follow
// when the job's log is closed.
func (s *Server) GetJobLogs(r *jobletv1.GetJobLogsRequest, st grpc.ServerStreamingServer[jobletv1.LogChunk]) error {
	ctx := st.Context()
	if err := ValidateID(r.GetId()); err != nil {
		return errdefs.ToGRPC(err)
	}
	j, err := s.iso.Get(ctx, r.GetId())
	if err != nil {
		return userError(ctx, "isolator", err)
	}
	follow := r.GetFollow()
	if follow && ended(j.GetState()) {
		// logd waits for a log that does not exist yet when following; a job
		// that ended without ever having a log (canceled before it ran) would
		// keep the follower waiting forever.
		stat, err := s.logs.Stat(ctx, r.GetId())
		if err != nil {
			return userError(ctx, "logd", err)
		}
		if !stat.Exists {
			return nil
		}
	}
	if s.logdConn != nil {
		err = forwardLogs(ctx, s.logdConn, r.GetId(), follow, st)
	} else {
		err = s.logs.Read(ctx, r.GetId(), 0, follow, func(rec logdapi.Record) error {
			return st.Send(&jobletv1.LogChunk{Stream: rec.Stream, Data: rec.Data, Offset: rec.Offset})
		})
	}
	if errors.Is(err, errdefs.ErrNotFound) && !follow {
		// The job exists (the isolator said so) but has written nothing yet.
		return nil
	}
	if err != nil {
		return userError(ctx, "logd", err)
	}
	return nil
}

// ended reports whether a job in state s will write no more output.
func ended(s jobletv1.JobState) bool {
	switch s {
	case jobletv1.JobState_JOB_STATE_COMPLETED, jobletv1.JobState_JOB_STATE_FAILED,
		jobletv1.JobState_JOB_STATE_STOPPED, jobletv1.JobState_JOB_STATE_CANCELED:
		return true
	}
	return false
}

// userError turns a helper's error into what the client may see. Helper
// errors of a known kind already carry a safe message, except when the
// helper cannot be reached: then the transport's message would show socket
// paths, so the client gets a plain one and the details go to the log.
func userError(ctx context.Context, helper string, err error) error {
	log := logging.From(ctx)
	switch {
	case errors.Is(err, errdefs.ErrUnavailable):
		log.Error().Err(err).Str("helper", helper).Msg("helper unavailable")
		return errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrUnavailable, "the %s service is unavailable; try again shortly", helper))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), knownKind(err):
		return errdefs.ToGRPC(err)
	case status.Code(err) == codes.Canceled, status.Code(err) == codes.DeadlineExceeded:
		// The client went away (or its deadline passed) and the helper
		// call ended with it: nothing failed.
		return err
	}
	// Anything else (a helper's internal error, an unexpected status) could
	// carry internals: log it, tell the client only that it failed.
	log.Error().Err(err).Str("helper", helper).Msg("helper call failed")
	return errdefs.ToGRPC(errdefs.WithJob(errHelperFailed, errdefs.JobOf(err)))
}

// errHelperFailed stands for a helper's error whose details stay in the
// gateway's log; ToGRPC tells the client only "internal error".
var errHelperFailed = errors.New("helper call failed")

func knownKind(err error) bool {
	for _, k := range []error{
		errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrPermissionDenied,
		errdefs.ErrAlreadyExists, errdefs.ErrFailedPrecondition, errdefs.ErrResourceExhausted,
		errdefs.ErrUnauthenticated,
	} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
