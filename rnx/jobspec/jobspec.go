// Package jobspec turns the flags of `rnx run` into a JobSpec, refusing bad
// values with a message that names the flag. The gateway and the isolator
// validate again; checking here gives the user a fast, precise answer.
package jobspec

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Flags are the values of rnx run's flags.
type Flags struct {
	MaxCPU    int32  // --max-cpu, percent of one CPU
	MaxMemory int32  // --max-memory, MB
	MaxIOBPS  int64  // --max-iobps, bytes per second
	CPUCores  string // --cpu-cores, e.g. "0-3" or "1,3,5"
	MaxPIDs   int32  // --max-pids
	Network   string // --network
	Name      string // --name
	Schedule  string // --schedule, relative ("30min") or RFC3339
}

// Limits on what rnx will send; the server applies its own, tighter ones.
const (
	maxNameLen     = 128
	maxNetworkLen  = 64
	maxScheduleAge = 366 * 24 * time.Hour
	maxCoreIndex   = 1 << 16
)

// Build validates f and returns the spec for command and args. now is the
// time a relative or absolute schedule is measured against.
func Build(f Flags, command string, args []string, now time.Time) (*jobletv1.JobSpec, error) {
	var errs []error
	for _, n := range []struct {
		flag string
		v    int64
	}{
		{"--max-cpu", int64(f.MaxCPU)},
		{"--max-memory", int64(f.MaxMemory)},
		{"--max-iobps", f.MaxIOBPS},
		{"--max-pids", int64(f.MaxPIDs)},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (got %d)", n.flag, n.v))
		}
	}
	if f.CPUCores != "" {
		if err := ValidateCores(f.CPUCores); err != nil {
			errs = append(errs, err)
		}
	}
	if f.Network != "" && !validNetworkName(f.Network) {
		errs = append(errs, fmt.Errorf("--network %q: want letters, digits, '-' or '_' (at most %d)", f.Network, maxNetworkLen))
	}
	if err := validateText("--name", f.Name, maxNameLen); err != nil {
		errs = append(errs, err)
	}
	if f.Schedule != "" {
		if _, err := ParseSchedule(f.Schedule, now); err != nil {
			errs = append(errs, err)
		}
	}
	if command == "" {
		errs = append(errs, errors.New("no command given"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &jobletv1.JobSpec{
		Command: command,
		Args:    args,
		Limits: &jobletv1.Limits{
			MaxCpuPercent: f.MaxCPU,
			MaxMemoryMb:   f.MaxMemory,
			MaxIoBps:      f.MaxIOBPS,
			CpuCores:      f.CPUCores,
			MaxPids:       f.MaxPIDs,
		},
		Network:  f.Network,
		Schedule: f.Schedule,
		Name:     f.Name,
	}, nil
}

// validNetworkName reports whether s is a network name: a letter or
// digit, then up to 63 letters, digits, '_' or '-'.
func validNetworkName(s string) bool { return IsName(s, maxNetworkLen, "_-") }

// IsName reports whether s is a name of the kind the API takes (network
// names, job ids): 1 to max bytes, a letter or digit first, then letters,
// digits or bytes of punct. A loop rather than a regular expression:
// compiling one such as `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$` (63 nested
// copies of the class) took 0.1 to 0.2 ms of every command that checks one.
func IsName(s string, max int, punct string) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && strings.IndexByte(punct, c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validateText(flag, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("%s is longer than %d bytes", flag, max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", flag)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("%s must not contain control characters", flag)
	}
	return nil
}

// ValidateCores checks a cpuset list: comma-separated core numbers or
// ascending ranges, such as "0-3" or "1,3,5". Whether the cores exist is
// for the server to say; it knows the host.
func ValidateCores(s string) error {
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, errA := coreIndex(lo)
		b, errB := a, error(nil)
		if isRange {
			b, errB = coreIndex(hi)
		}
		switch {
		case part == "":
			return fmt.Errorf("--cpu-cores %q: empty entry; want e.g. 0-3 or 1,3,5", s)
		case errA != nil || errB != nil:
			return fmt.Errorf("--cpu-cores %q: %q is not a core number or range; want e.g. 0-3 or 1,3,5", s, part)
		case b < a:
			return fmt.Errorf("--cpu-cores %q: range %q runs backwards", s, part)
		}
	}
	return nil
}

func coreIndex(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n >= maxCoreIndex {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// relativePart is one "<number><unit>" of a relative schedule, compiled at
// first use, not at start: every rnx process would pay for it (regexp
// compiles were ~0.1 ms each of a cold start), and few schedule a job.
var relativePart = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(\d+)(hours|hour|hrs|hr|h|minutes|minute|mins|min|m|seconds|second|secs|sec|s|days|day|d)`)
})

var unitOf = map[string]time.Duration{
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
}

// ParseSchedule returns when a schedule falls due: a relative time from now
// ("45s", "30min", "1hour", "2h30m") or an RFC3339 time, with or without a
// zone (local time without one). It must lie in the future and within a
// year.
func ParseSchedule(s string, now time.Time) (time.Time, error) {
	var at time.Time
	if d, ok := parseRelative(s); ok {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--schedule %q: must be later than now", s)
		}
		at = now.Add(d)
	} else if t, err := parseAbsolute(s); err == nil {
		at = t
	} else {
		return time.Time{}, fmt.Errorf("--schedule %q: want a delay like 30min, 2h30m, 1hour, or a time like 2025-07-18T20:02:48Z", s)
	}
	switch {
	case !at.After(now):
		return time.Time{}, fmt.Errorf("--schedule %q: %s is in the past", s, at.UTC().Format(time.RFC3339))
	case at.Sub(now) > maxScheduleAge:
		return time.Time{}, fmt.Errorf("--schedule %q: more than a year away", s)
	}
	return at, nil
}

func parseRelative(s string) (time.Duration, bool) {
	var total time.Duration
	rest := s
	for rest != "" {
		m := relativePart().FindStringSubmatch(rest)
		if m == nil {
			return 0, false
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || n > int64(maxScheduleAge/unitOf[m[2]]) {
			return maxScheduleAge + 1, true
		}
		total += time.Duration(n) * unitOf[m[2]]
		if total > maxScheduleAge {
			return total, true
		}
		rest = rest[len(m[0]):]
	}
	return total, s != ""
}

func parseAbsolute(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.ParseInLocation("2006-01-02T15:04:05", s, time.Local)
}
