package jobspec

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2025, 7, 18, 12, 0, 0, 0, time.UTC)

func TestBuild(t *testing.T) {
	spec, err := Build(Flags{MaxCPU: 150, MaxMemory: 512, MaxIOBPS: 10485760, CPUCores: "0-1,3", MaxPIDs: 64,
		Network: "backend", Name: "train", Schedule: "30min"}, "python3", []string{"-c", "print(1)"}, now)
	if err != nil {
		t.Fatal(err)
	}
	l := spec.GetLimits()
	if spec.GetCommand() != "python3" || !slices.Equal(spec.GetArgs(), []string{"-c", "print(1)"}) ||
		l.GetMaxCpuPercent() != 150 || l.GetMaxMemoryMb() != 512 || l.GetMaxIoBps() != 10485760 ||
		l.GetCpuCores() != "0-1,3" || l.GetMaxPids() != 64 || spec.GetNetwork() != "backend" ||
		spec.GetName() != "train" || spec.GetSchedule() != "30min" {
		t.Errorf("spec = %v", spec)
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		f    Flags
		want string
	}{
		{Flags{MaxCPU: -1}, "--max-cpu must not be negative (got -1)"},
		{Flags{MaxMemory: -5}, "--max-memory must not be negative (got -5)"},
		{Flags{MaxIOBPS: -1}, "--max-iobps must not be negative"},
		{Flags{MaxPIDs: -2}, "--max-pids must not be negative"},
		{Flags{CPUCores: "1,,2"}, `--cpu-cores "1,,2": empty entry`},
		{Flags{CPUCores: "3-1"}, `range "3-1" runs backwards`},
		{Flags{CPUCores: "a"}, `"a" is not a core number or range`},
		{Flags{CPUCores: "1-"}, `"1-" is not a core number or range`},
		{Flags{CPUCores: "-1"}, `"-1" is not a core number or range`},
		{Flags{CPUCores: "1-2-3"}, `"1-2-3" is not a core number or range`},
		{Flags{CPUCores: " 1"}, `" 1" is not a core number or range`},
		{Flags{CPUCores: "99999999"}, `is not a core number or range`},
		{Flags{Network: "bad name"}, `--network "bad name"`},
		{Flags{Network: "eth0;rm"}, `--network "eth0;rm"`},
		{Flags{Name: "a\x1bb"}, "--name must not contain control characters"},
		{Flags{Name: strings.Repeat("n", 129)}, "--name is longer than 128 bytes"},
		{Flags{Schedule: "soon"}, `--schedule "soon": want a delay`},
		{Flags{Schedule: "0s"}, `--schedule "0s": must be later than now`},
		{Flags{Schedule: "-5m"}, `--schedule "-5m": want a delay`},
		{Flags{Schedule: "400days"}, "more than a year away"},
		{Flags{Schedule: "99999999999999999999h"}, "more than a year away"},
		{Flags{Schedule: "2025-07-18T11:00:00Z"}, "2025-07-18T11:00:00Z is in the past"},
	} {
		_, err := Build(tc.f, "true", nil, now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%+v) = %v, want an error containing %q", tc.f, err, tc.want)
		}
	}
	if _, err := Build(Flags{}, "", nil, now); err == nil {
		t.Error("Build without a command succeeded")
	}
}

func TestCoresAccepted(t *testing.T) {
	for _, s := range []string{"0", "2", "0-3", "1,3,5,7", "0-1,4-7", "3-3"} {
		if err := ValidateCores(s); err != nil {
			t.Errorf("ValidateCores(%q) = %v", s, err)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	local := time.Date(2025, 7, 18, 20, 2, 48, 0, time.Local)
	for in, want := range map[string]time.Time{
		"45s":                       now.Add(45 * time.Second),
		"30min":                     now.Add(30 * time.Minute),
		"1hour":                     now.Add(time.Hour),
		"2h30m":                     now.Add(150 * time.Minute),
		"1d":                        now.Add(24 * time.Hour),
		"2025-07-18T20:02:48Z":      time.Date(2025, 7, 18, 20, 2, 48, 0, time.UTC),
		"2025-07-18T20:02:48-07:00": time.Date(2025, 7, 19, 3, 2, 48, 0, time.UTC),
		"2025-07-18T20:02:48":       local,
	} {
		if local.Before(now) && in == "2025-07-18T20:02:48" {
			continue // the local zone puts it in the past; covered by the refusals
		}
		got, err := ParseSchedule(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSchedule(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

// validNetworkName accepts exactly what the regular expression it replaced
// did.
func TestValidNetworkName(t *testing.T) {
	oracle := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	names := []string{
		"", "none", "bridge", "isolated", "b", "7", "back-end", "back_end", "a-", "a_",
		"-a", "_a", ".a", "a.b", " a", "a ", "a\x1b", "a\n", "é", "aé", "a/b", "a:b",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65),
		"a" + strings.Repeat("-", 63), "a" + strings.Repeat("_", 64),
	}
	// Every byte in the first and in a later position.
	for c := range 256 {
		names = append(names, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
	}
	for _, n := range names {
		if got, want := validNetworkName(n), oracle.MatchString(n); got != want {
			t.Errorf("validNetworkName(%q) = %v, want %v", n, got, want)
		}
	}
}
