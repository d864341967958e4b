package spec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// now is a fixed instant; loc is a zone with an offset, so that zone-less
// times are visibly read in it and not in UTC.
var (
	now = time.Date(2025, 7, 20, 12, 0, 0, 0, time.UTC)
	loc = time.FixedZone("test", 2*3600)
)

func TestParseRelative(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"45s", 45 * time.Second},
		{"1s", time.Second},
		{"5min", 5 * time.Minute},
		{"30min", 30 * time.Minute},
		{"5m", 5 * time.Minute},
		{"90m", 90 * time.Minute},
		{"1hour", time.Hour},
		{"2hours", 2 * time.Hour},
		{"1h", time.Hour},
		{"2h30m", 2*time.Hour + 30*time.Minute},
		{"1h30m", 90 * time.Minute},
		{"1hour30min", 90 * time.Minute},
		{"1h30m15s", time.Hour + 30*time.Minute + 15*time.Second},
		{"2hours15minutes", 2*time.Hour + 15*time.Minute},
		{"10seconds", 10 * time.Second},
		{"3secs", 3 * time.Second},
		{"1minute", time.Minute},
		{"1d", 24 * time.Hour},
		{"2days", 48 * time.Hour},
		{"1day12h", 36 * time.Hour},
		{"0h5m", 5 * time.Minute},
		{"007s", 7 * time.Second},
		{"365d", 365 * 24 * time.Hour}, // exactly the horizon is allowed
		{"8760h", 365 * 24 * time.Hour},
	} {
		got, err := Parse(tc.in, now, loc, 0)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if d := got.Sub(now); d != tc.want {
			t.Errorf("Parse(%q) = now+%v, want now+%v", tc.in, d, tc.want)
		}
	}
}

func TestParseAbsolute(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		// Zone-less: the server's local time (loc, UTC+2 here).
		{"2025-07-20T15:30:00", time.Date(2025, 7, 20, 13, 30, 0, 0, time.UTC)},
		{"2025-07-20T15:30:00Z", time.Date(2025, 7, 20, 15, 30, 0, 0, time.UTC)},
		{"2025-07-20T15:30:00-07:00", time.Date(2025, 7, 20, 22, 30, 0, 0, time.UTC)},
		{"2025-07-20T18:30:00+05:30", time.Date(2025, 7, 20, 13, 0, 0, 0, time.UTC)},
		{"2025-07-20T15:30:00.250Z", time.Date(2025, 7, 20, 15, 30, 0, 250e6, time.UTC)},
		{"2025-07-20T15:30:00.5", time.Date(2025, 7, 20, 13, 30, 0, 500e6, time.UTC)},
		{"2026-02-28T10:00:00Z", time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)},
		{"2026-07-20T12:00:00Z", time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)}, // now + exactly one year (2026 is not leap)
	} {
		got, err := Parse(tc.in, now, loc, 0)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if !got.Equal(tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, got.UTC(), tc.want)
		}
	}
}

// TestParseLeapDay checks that the impossible-date rule is the calendar's:
// 29 February exists in a leap year only.
func TestParseLeapDay(t *testing.T) {
	early := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := Parse("2024-02-29T10:00:00Z", early, time.UTC, 0); err != nil {
		t.Errorf("leap day refused: %v", err)
	}
	_, err := Parse("2025-02-29T10:00:00Z", early, time.UTC, 2*DefaultHorizon)
	if err == nil || !strings.Contains(err.Error(), "not a real date") {
		t.Errorf("29 Feb 2025: got %v, want an impossible-date error", err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: a part of the one-line error
	}{
		{"", "empty schedule"},
		{"-5m", "negative"},
		{"-1h30m", "negative"},
		{"-2025-07-20T15:30:00", "negative"},
		{"0s", "zero"},
		{"0h0m0s", "zero"},
		{"0", "missing unit"},
		{"10", "missing unit"},
		{"h", "expected a number"},
		{"min", "expected a number"},
		{"5 minutes", "unexpected ' '"},
		{" 5m", "unexpected ' '"},
		{"5m ", "unexpected ' '"},
		{"1e3h", "unknown unit \"e\""},
		{"1.5h", "unexpected '.'"},
		{"+5m", "unexpected '+'"},
		{"5M", "unexpected 'M'"},
		{"5ms", "unknown unit \"ms\""},
		{"5us", "unknown unit \"us\""},
		{"5w", "unknown unit \"w\""},
		{"30m1h", "largest to smallest"},
		{"1h2h", "largest to smallest"},
		{"1h1hour", "largest to smallest"},
		{"5m\x00", "unexpected '\\x00'"},
		{"tomorrow", "expected a number"},
		{"now", "expected a number"},
		{"99999999999999999999h", "too large"},
		{"2562048h", "too large"},                    // just over the largest Duration
		{"106751d", "beyond the scheduling horizon"}, // fits a Duration, beyond a year
		{"366d", "beyond the scheduling horizon"},
		{"8761h", "beyond the scheduling horizon"},
		{"2024-02-30T10:00:00", "not a real date"},
		{"2025-13-01T10:00:00", "not a real date"},
		{"2025-07-32T10:00:00", "not a real date"},
		{"2025-07-20T24:00:00", "not a real date"},
		{"2025-07-20T15:60:00", "not a real date"},
		{"2025-07-20T15:30:61Z", "not a real date"},
		{"2025-07-20T15:30:00+25:00", "not a real date"},
		{"2025-07-20 15:30:00", "not an RFC3339 time"},
		{"2025-07-20", "not an RFC3339 time"},
		{"2025-07-20T15:30", "not an RFC3339 time"},
		{"2025-7-20T15:30:00", "not an RFC3339 time"},
		{"2025-07-20t15:30:00", "not an RFC3339 time"},
		{"2025-07-20T15:30:00z", "bad time zone"},
		{"2025-07-20T15:30:00 UTC", "bad time zone"},
		{"2025-07-20T15:30:00-0700", "bad time zone"},
		{"2025-07-20T15:30:00.Z", "no digits after the decimal point"},
		{"2025-07-20T11:59:59Z", "in the past"},
		{"2025-07-20T12:00:00Z", "in the past"}, // now is not the future
		{"2025-07-20T13:00:00", "in the past"},  // 11:00 UTC in loc
		{"2024-07-20T15:30:00Z", "in the past"},
		{"2026-07-20T12:00:01Z", "beyond the scheduling horizon"},
		{"2099-01-01T00:00:00Z", "beyond the scheduling horizon"},
		{strings.Repeat("1", 65), "longer than 64 bytes"},
	} {
		got, err := Parse(tc.in, now, loc, 0)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", tc.in, got)
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Parse(%q): error %v is not an invalid argument", tc.in, err)
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.ContainsAny(msg, "\n\r") {
			t.Errorf("Parse(%q) error %q, want one line containing %q", tc.in, msg, tc.want)
		}
	}
}

func TestParseHorizon(t *testing.T) {
	if _, err := Parse("1h", now, loc, 30*time.Minute); err == nil || !strings.Contains(err.Error(), "horizon of 30m0s") {
		t.Errorf("1h with a 30m horizon: %v", err)
	}
	if _, err := Parse("30min", now, loc, 30*time.Minute); err != nil {
		t.Errorf("30min with a 30m horizon: %v", err)
	}
	if _, err := Parse("2025-07-20T12:31:00Z", now, loc, 30*time.Minute); err == nil {
		t.Error("absolute time beyond a 30m horizon accepted")
	}
}

// TestParseNilLocation reads zone-less times in UTC when no location is given.
func TestParseNilLocation(t *testing.T) {
	got, err := Parse("2025-07-20T15:30:00", now, nil, 0)
	if err != nil || !got.Equal(time.Date(2025, 7, 20, 15, 30, 0, 0, time.UTC)) {
		t.Errorf("got %v, %v", got, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"30s", "5min", "1hour30min", "2h30m", "1d", "0s", "-5m", "10", "h",
		"5 minutes", "1e3h", "2025-07-20T15:30:00", "2025-07-20T15:30:00Z", "2025-07-20T15:30:00-07:00",
		"2024-02-30T10:00:00", "2025-07-20T15:30:00.123456789+01:00", "99999999999h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Parse(in, now, loc, 0)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Parse(%q): error %v is not an invalid argument", in, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("Parse(%q): error %q is not one line", in, err)
			}
			return
		}
		if !got.After(now) || got.Sub(now) > DefaultHorizon {
			t.Fatalf("Parse(%q) = %v, outside (now, now+horizon]", in, got)
		}
	})
}
