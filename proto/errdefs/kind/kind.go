// Package kind holds the kinds of error of package errdefs without its
// gRPC conversions, for code that must not link gRPC: a job's init is a
// binary of its own, started for every job, and each package it links
// costs start time and memory per job. errdefs re-exports every name here,
// so errors.Is works whichever package made the error.
package kind

import (
	"errors"
	"fmt"
)

// The kinds of error a caller can act on.
var (
	ErrNotFound           = errors.New("not found")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrUnavailable        = errors.New("unavailable")
	ErrUnauthenticated    = errors.New("unauthenticated")
)

// Errorf returns an error of the given kind with a user-safe message.
func Errorf(k error, format string, args ...any) error {
	return &kindError{kind: k, msg: fmt.Sprintf(format, args...)}
}

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }
