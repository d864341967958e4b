// Package spec parses the schedule a user gives a job (`--schedule=SPEC`)
// into the absolute instant the job is due. It is pure: the caller passes
// the current time, the location of zone-less times and the horizon, so the
// same input always gives the same answer in tests and in the daemon.
//
// Two forms are accepted:
//
//   - a relative delay: one or more <digits><unit> parts with no spaces, the
//     units strictly decreasing and each used once: "30s", "5min", "1hour",
//     "2h30m", "1hour30min", "90m", "1d12h". Units: d, day, days (24 h, not a
//     calendar day); h, hour, hours; m, min, mins, minute, minutes; s, sec,
//     secs, second, seconds. No sign, no fraction, no exponent.
//   - an absolute RFC3339 time, "2025-07-20T15:30:00" (in the given
//     location: the server's local time), "2025-07-20T15:30:00Z" or
//     "2025-07-20T15:30:00-07:00", optionally with fractional seconds.
//
// Every rejection is an errdefs.ErrInvalidArgument error with one clear,
// user-safe line.
package spec

import (
	"strings"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// DefaultHorizon is how far ahead a job may be scheduled when the caller
// sets no horizon of its own.
const DefaultHorizon = 365 * 24 * time.Hour

// maxLen bounds the input: no valid schedule is longer, and error messages
// quote the input, so they stay short too.
const maxLen = 64

// hint is appended to every "cannot read this" error so the user sees what
// is accepted.
const hint = "want a delay like 30s, 5min, 1h30m or a time like 2025-07-20T15:30:00 or 2025-07-20T15:30:00Z"

// Parse returns the instant input names, relative to now. Zone-less absolute
// times are read in loc (nil means UTC). The result is always in
// (now, now+horizon]; horizon <= 0 means DefaultHorizon.
func Parse(input string, now time.Time, loc *time.Location, horizon time.Duration) (time.Time, error) {
	if horizon <= 0 {
		horizon = DefaultHorizon
	}
	if loc == nil {
		loc = time.UTC
	}
	switch {
	case input == "":
		return time.Time{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "empty schedule: %s", hint)
	case len(input) > maxLen:
		return time.Time{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "schedule is longer than %d bytes: %s", maxLen, hint)
	case strings.HasPrefix(input, "-"):
		return time.Time{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "schedule %q is negative: the delay must be positive", input)
	}

	var due time.Time
	if looksAbsolute(input) {
		t, err := parseAbsolute(input, loc)
		if err != nil {
			return time.Time{}, err
		}
		if !t.After(now) {
			return time.Time{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "schedule %q is in the past (now is %s)",
				input, now.UTC().Format(time.RFC3339))
		}
		due = t
	} else {
		d, err := parseRelative(input)
		if err != nil {
			return time.Time{}, err
		}
		due = now.Add(d)
	}
	if due.Sub(now) > horizon {
		return time.Time{}, beyond(input, horizon)
	}
	return due, nil
}

func beyond(input string, horizon time.Duration) error {
	return errdefs.Errorf(errdefs.ErrInvalidArgument, "schedule %q is beyond the scheduling horizon of %s", input, horizon)
}

// unreadable is the error for input that is neither form.
func unreadable(input, why string) error {
	return errdefs.Errorf(errdefs.ErrInvalidArgument, "cannot read schedule %q (%s): %s", input, why, hint)
}

// looksAbsolute tells the two forms apart by their first bytes: a relative
// delay never has a '-' after its leading digits, an RFC3339 time always
// does after its four-digit year.
func looksAbsolute(s string) bool {
	return len(s) > 4 && isDigits(s[:4]) && s[4] == '-'
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseAbsolute reads YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]. The shape is
// checked here and the values by the time package, which refuses a day,
// month, hour, minute or second out of range; a string with the right shape
// that the time package refuses therefore names no real instant.
func parseAbsolute(s string, loc *time.Location) (time.Time, error) {
	const base = "2006-01-02T15:04:05"
	if len(s) < len(base) || !shaped(s[:len(base)], base) {
		return time.Time{}, unreadable(s, "not an RFC3339 time")
	}
	rest := s[len(base):]
	if strings.HasPrefix(rest, ".") {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return time.Time{}, unreadable(s, "no digits after the decimal point")
		}
		rest = rest[n:]
	}
	var (
		t   time.Time
		err error
	)
	switch {
	case rest == "":
		// time.Parse takes fractional seconds after the seconds field even
		// when the layout has none.
		t, err = time.ParseInLocation(base, s, loc)
	case rest == "Z" || (len(rest) == 6 && shaped(rest[1:], "07:00") && (rest[0] == '+' || rest[0] == '-')):
		t, err = time.Parse(time.RFC3339, s)
	default:
		return time.Time{}, unreadable(s, "bad time zone: use Z or an offset like -07:00")
	}
	if err != nil {
		return time.Time{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "schedule %q is not a real date and time", s)
	}
	return t, nil
}

// shaped reports whether s has a digit wherever layout has one and the same
// byte elsewhere.
func shaped(s, layout string) bool {
	if len(s) != len(layout) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if layout[i] >= '0' && layout[i] <= '9' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != layout[i] {
			return false
		}
	}
	return true
}
