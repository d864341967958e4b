package jobs

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Limits on what a job spec may hold. The gateway checks these too; the
// isolator checks again because it must not trust its caller.
const (
	MaxArgs         = 4096
	MaxCommandBytes = 256 << 10 // the command and all its arguments
	MaxNameBytes    = 128
	maxCoresBytes   = 256
	maxNetworkBytes = 64 // netd checks the name itself; this only bounds it
)

// Validate checks a job spec, returning an errdefs.ErrInvalidArgument error
// that says what is wrong.
func Validate(spec *jobletv1.JobSpec) error {
	if spec == nil {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "a job spec is required")
	}
	if spec.GetCommand() == "" {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "a command is required")
	}
	if n := len(spec.GetArgs()); n > MaxArgs {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "too many arguments: %d (at most %d)", n, MaxArgs)
	}
	size := len(spec.GetCommand())
	for _, a := range append([]string{spec.GetCommand()}, spec.GetArgs()...) {
		if strings.IndexByte(a, 0) >= 0 {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "the command and its arguments cannot contain NUL bytes")
		}
	}
	for _, a := range spec.GetArgs() {
		size += len(a)
	}
	if size > MaxCommandBytes {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "the command line is too long: %d bytes (at most %d)", size, MaxCommandBytes)
	}
	if err := validateName(spec.GetName()); err != nil {
		return err
	}
	if n := len(spec.GetNetwork()); n > maxNetworkBytes {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "the network name is too long: %d bytes (at most %d)", n, maxNetworkBytes)
	}
	// A schedule is read against the clock when the job is recorded
	// (schedule.go).
	return validateLimits(spec.GetLimits())
}

func validateName(name string) error {
	if len(name) > MaxNameBytes {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "the job name is too long: %d bytes (at most %d)", len(name), MaxNameBytes)
	}
	if !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "the job name must be printable UTF-8")
	}
	return nil
}

// validateLimits refuses what can never be right, before anything else is
// looked at. Zero means "the daemon default"; limits.Resolve checks the
// values against the host and the policy.
func validateLimits(l *jobletv1.Limits) error {
	for _, v := range []struct {
		flag string
		val  int64
	}{
		{"max-cpu", int64(l.GetMaxCpuPercent())},
		{"max-memory", int64(l.GetMaxMemoryMb())},
		{"max-iobps", l.GetMaxIoBps()},
		{"max-pids", int64(l.GetMaxPids())},
	} {
		if v.val < 0 {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "--%s cannot be negative: %d", v.flag, v.val)
		}
	}
	cores := l.GetCpuCores()
	if len(cores) > maxCoresBytes || strings.Trim(cores, "0123456789,-") != "" {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "--cpu-cores must be a list of cores and ranges such as 0-3 or 1,3,5")
	}
	return nil
}
