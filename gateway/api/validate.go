package api

import (
	"regexp"
	"strings"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Bounds on what a client may send. The helpers check again; these keep
// obviously bad or huge requests away from them.
const (
	MaxIDLen       = 20 // a uint64 in decimal
	MaxCommandLen  = 4096
	MaxArgs        = 4096
	MaxArgsBytes   = 256 << 10 // all arguments together, well under ARG_MAX
	MaxNameLen     = 128
	MaxNetworkLen  = 64
	MaxScheduleLen = 64
	MaxCPUCoresLen = 256
	maxShownBytes  = 32
	// MaxNetworkNameLen is netd's limit on a custom network's name.
	MaxNetworkNameLen = 32
	// MaxCIDRLen fits the longest CIDR text there is (an IPv6 one); netd
	// parses and judges the range itself.
	MaxCIDRLen = len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
)

// networkName is the shape netd accepts for a network name (1 to 32
// lowercase letters, digits and dashes, a letter first, no dash last). The
// gateway checks the shape only, so hostile names never reach the root
// helper; netd alone knows which names are reserved or taken.
var networkName = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`)

// ValidateNetworkName checks the shape of a network's name.
func ValidateNetworkName(name string) error {
	if name == "" {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "network name is required")
	}
	if !networkName.MatchString(name) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument,
			"network name %q: use 1 to %d lowercase letters, digits and dashes, starting with a letter", shown(name), MaxNetworkNameLen)
	}
	return nil
}

// ValidateCIDR checks that a network's CIDR is present and of a sane
// length; whether it is a usable range is netd's to say.
func ValidateCIDR(cidr string) error {
	if cidr == "" {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "CIDR is required, e.g. 10.1.0.0/24")
	}
	return checkString("CIDR", cidr, MaxCIDRLen)
}

// shown bounds how much of a client's string goes into an error message.
func shown(s string) string {
	if len(s) > maxShownBytes {
		return s[:maxShownBytes] + "..."
	}
	return s
}

// ValidateID checks a job id: decimal digits only, bounded length.
func ValidateID(id string) error {
	if id == "" {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "job id is required")
	}
	if len(id) > MaxIDLen {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid job id %q: longer than %d digits", shown(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid job id %q: must be decimal digits", shown(id))
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
