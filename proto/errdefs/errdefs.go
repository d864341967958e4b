// Package errdefs is Joblet's one error vocabulary. Every service wraps its
// errors around one of these kinds with %w; at each gRPC edge the kind becomes
// a status code and back again, so errors.Is works across sockets.
package errdefs

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/errdefs/kind"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// The kinds of error a caller can act on (defined in package kind, which
// code that must not link gRPC uses directly).
var (
	ErrNotFound           = kind.ErrNotFound
	ErrInvalidArgument    = kind.ErrInvalidArgument
	ErrPermissionDenied   = kind.ErrPermissionDenied
	ErrAlreadyExists      = kind.ErrAlreadyExists
	ErrFailedPrecondition = kind.ErrFailedPrecondition
	ErrResourceExhausted  = kind.ErrResourceExhausted
	ErrUnavailable        = kind.ErrUnavailable
	ErrUnauthenticated    = kind.ErrUnauthenticated
)

var kinds = []struct {
	err  error
	code codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrPermissionDenied, codes.PermissionDenied},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrResourceExhausted, codes.ResourceExhausted},
	{ErrUnavailable, codes.Unavailable},
	{ErrUnauthenticated, codes.Unauthenticated},
}

// Errorf returns an error of the given kind with a user-safe message.
func Errorf(k error, format string, args ...any) error { return kind.Errorf(k, format, args...) }

// ToGRPC turns err into a gRPC status error carrying its kind as the code.
// Errors of no known kind become codes.Internal with a generic message, so
// internals stay in the logs.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !hasKind(err) {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return withJob(status.New(k.code, err.Error()), JobOf(err))
		}
	}
	return withJob(status.New(codes.Internal, "internal error"), JobOf(err))
}

// withJob returns st as an error, with job as its detail when there is one.
func withJob(st *status.Status, job *jobletv1.Job) error {
	if job == nil {
		return st.Err()
	}
	if d, err := st.WithDetails(job); err == nil {
		st = d
	}
	return st.Err()
}

// FromGRPC turns a gRPC status error back into an error of the matching kind,
// keeping the server's message.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	job := statusJob(st)
	for _, k := range kinds {
		if st.Code() == k.code {
			return WithJob(kind.Errorf(k.err, "%s", st.Message()), job)
		}
	}
	switch st.Code() {
	case codes.Canceled:
		return fmt.Errorf("%s: %w", st.Message(), context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", st.Message(), context.DeadlineExceeded)
	}
	return err
}

// WithJob attaches the record of the job err is about: a job that was
// created but could not start is recorded FAILED, and the caller is told
// both the error and the record (its id, its exit code: 127 for a command
// not found, as a shell has it). The record crosses every gRPC edge as the
// status's detail; JobOf gives it back. A nil job returns err unchanged.
func WithJob(err error, job *jobletv1.Job) error {
	if err == nil || job == nil {
		return err
	}
	return &jobError{err: err, job: job}
}

// JobOf returns the job record attached to err by WithJob, or carried by
// a gRPC status error as its detail, or nil.
func JobOf(err error) *jobletv1.Job {
	var je *jobError
	if errors.As(err, &je) {
		return je.job
	}
	if st, ok := status.FromError(err); ok {
		return statusJob(st)
	}
	return nil
}

func statusJob(st *status.Status) *jobletv1.Job {
	for _, d := range st.Details() {
		if j, ok := d.(*jobletv1.Job); ok {
			return j
		}
	}
	return nil
}

type jobError struct {
	err error
	job *jobletv1.Job
}

func (e *jobError) Error() string { return e.err.Error() }
func (e *jobError) Unwrap() error { return e.err }

func hasKind(err error) bool {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return true
		}
	}
	return false
}

// NoSpace turns a write that failed for want of disk space (ENOSPC, or
// EDQUOT: a quota is a full disk to the writer) into ErrResourceExhausted
// with a message the user can act on, naming the disk ("state", "log") and
// what was being saved; any other error is returned unchanged. The cause
// stays in the chain, so errors.Is(err, syscall.ENOSPC) still holds.
func NoSpace(err error, disk, what string) error {
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return err
	}
	return &noSpaceError{cause: err, msg: fmt.Sprintf("no space left on the server's %s disk (%s); free some space and try again", disk, what)}
}

type noSpaceError struct {
	cause error
	msg   string
}

func (e *noSpaceError) Error() string { return e.msg }

// Unwrap gives both the kind and the cause to errors.Is.
func (e *noSpaceError) Unwrap() []error { return []error{ErrResourceExhausted, e.cause} }
