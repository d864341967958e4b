package spec

import (
	"fmt"
	"math"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// units maps every accepted unit name to its length and rank; parts of a
// delay must come in strictly decreasing rank, so "1h30m" is read but
// "30m1h" and "1h2h" are not.
var units = map[string]struct {
	d    time.Duration
	rank int
}{
	"d": {24 * time.Hour, 4}, "day": {24 * time.Hour, 4}, "days": {24 * time.Hour, 4},
	"h": {time.Hour, 3}, "hour": {time.Hour, 3}, "hours": {time.Hour, 3},
	"m": {time.Minute, 2}, "min": {time.Minute, 2}, "mins": {time.Minute, 2},
	"minute": {time.Minute, 2}, "minutes": {time.Minute, 2},
	"s": {time.Second, 1}, "sec": {time.Second, 1}, "secs": {time.Second, 1},
	"second": {time.Second, 1}, "seconds": {time.Second, 1},
}

// parseRelative reads a delay made of <digits><unit> parts. It is written
// out rather than left to time.ParseDuration, which knows neither "min" nor
// "hour" and accepts signs, fractions and units finer than a second.
func parseRelative(s string) (time.Duration, error) {
	var total time.Duration
	lastRank := math.MaxInt
	for i := 0; i < len(s); {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		digits := s[start:i]
		if digits == "" {
			if s[i] < 'a' || s[i] > 'z' {
				return 0, unreadable(s, fmt.Sprintf("unexpected %q", s[i]))
			}
			return 0, unreadable(s, fmt.Sprintf("expected a number at byte %d", start+1))
		}
		ustart := i
		for i < len(s) && s[i] >= 'a' && s[i] <= 'z' {
			i++
		}
		name := s[ustart:i]
		if name == "" {
			if i < len(s) {
				return 0, unreadable(s, fmt.Sprintf("unexpected %q", s[i]))
			}
			return 0, unreadable(s, fmt.Sprintf("missing unit after %s", digits))
		}
		u, ok := units[name]
		if !ok {
			return 0, unreadable(s, fmt.Sprintf("unknown unit %q", name))
		}
		if u.rank >= lastRank {
			return 0, unreadable(s, "units must go from largest to smallest, each once")
		}
		lastRank = u.rank
		part, ok := mul(digits, u.d)
		if !ok || total > math.MaxInt64-part {
			return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "schedule %q is too large a delay", s)
		}
		total += part
	}
	if total == 0 {
		return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "schedule %q is zero: the delay must be positive", s)
	}
	return total, nil
}

// mul returns digits × unit, or false when it does not fit a Duration.
func mul(digits string, unit time.Duration) (time.Duration, bool) {
	limit := time.Duration(math.MaxInt64) / unit
	var n time.Duration
	for i := 0; i < len(digits); i++ {
		n = n*10 + time.Duration(digits[i]-'0')
		if n > limit {
			return 0, false
		}
	}
	return n * unit, true
}
