package api

import (
	"strings"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Bounds on what a client may send. The isolator checks again; these keep
// obviously bad or huge requests away from the root helpers.
const (
	MaxIDLen        = 20 // a uint64 in decimal
	MaxCommandLen   = 4096
	MaxArgs         = 4096
	MaxArgsBytes    = 256 << 10 // all arguments together, well under ARG_MAX
	MaxNameLen      = 128
	MaxNetworkLen   = 64
	MaxScheduleLen  = 64
	MaxCPUCoresLen  = 256
	maxShownIDBytes = 32
)

// ValidateID checks a job id: decimal digits only, bounded length.
func ValidateID(id string) error {
	if id == "" {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "job id is required")
	}
	shown := id
	if len(shown) > maxShownIDBytes {
		shown = shown[:maxShownIDBytes] + "..."
	}
	if len(id) > MaxIDLen {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid job id %q: longer than %d digits", shown, MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid job id %q: must be decimal digits", shown)
		}
	}
	return nil
}

// ValidateSpec checks a job spec before it goes to the isolator.
func ValidateSpec(s *jobletv1.JobSpec) error {
	if s == nil {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "job spec is required")
	}
	if strings.TrimSpace(s.GetCommand()) == "" {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "command is required")
	}
	fields := []struct {
		name, value string
		max         int
	}{
		{"command", s.GetCommand(), MaxCommandLen},
		{"name", s.GetName(), MaxNameLen},
		{"network", s.GetNetwork(), MaxNetworkLen},
		{"schedule", s.GetSchedule(), MaxScheduleLen},
		{"cpu cores", s.GetLimits().GetCpuCores(), MaxCPUCoresLen},
	}
	for _, f := range fields {
		if err := checkString(f.name, f.value, f.max); err != nil {
			return err
		}
	}
	if len(s.GetArgs()) > MaxArgs {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "too many arguments: %d (at most %d)", len(s.GetArgs()), MaxArgs)
	}
	total := 0
	for _, a := range s.GetArgs() {
		if strings.IndexByte(a, 0) >= 0 {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "arguments must not contain NUL bytes")
		}
		total += len(a)
	}
	if total > MaxArgsBytes {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "arguments too long: %d bytes (at most %d)", total, MaxArgsBytes)
	}
	return validateLimits(s.GetLimits())
}

func checkString(name, v string, max int) error {
	if len(v) > max {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "%s too long: %d bytes (at most %d)", name, len(v), max)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "%s must not contain NUL bytes", name)
	}
	return nil
}

func validateLimits(l *jobletv1.Limits) error {
	nums := []struct {
		name string
		v    int64
	}{
		{"max cpu", int64(l.GetMaxCpuPercent())},
		{"max memory", int64(l.GetMaxMemoryMb())},
		{"max io bps", l.GetMaxIoBps()},
		{"max pids", int64(l.GetMaxPids())},
	}
	for _, n := range nums {
		if n.v < 0 {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "%s must not be negative, got %d", n.name, n.v)
		}
	}
	return nil
}
