package jobspec

import (
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

var fuzzNow = time.Date(2025, 7, 20, 12, 0, 0, 0, time.UTC)

// FuzzBuild feeds arbitrary flag values to Build: it never panics, every
// refusal names the flag at fault, and whatever it accepts obeys the rules
// the server will check again.
func FuzzBuild(f *testing.F) {
	f.Add(int32(0), int32(0), int64(0), "", int32(0), "", "", "", "echo")
	f.Add(int32(150), int32(512), int64(1<<20), "0-3", int32(100), "backend", "nightly", "30min", "python3")
	f.Add(int32(-1), int32(-5), int64(-1), "3-1", int32(-1), "-bad", "a\x00b", "-5m", "")
	f.Add(int32(0), int32(0), int64(0), "1,,2", int32(0), strings.Repeat("n", 65), strings.Repeat("x", 129), "2025-07-20T11:00:00Z", "x")
	f.Add(int32(0), int32(0), int64(0), "0-65536", int32(0), "net_1", "\u202e", "99999999999999999999h", "x")
	f.Add(int32(0), int32(0), int64(0), "00,1-1", int32(0), "a", "ok", "2025-07-21T12:00:00+02:00", "x")
	f.Fuzz(func(t *testing.T, cpu, mem int32, io int64, cores string, pids int32, network, name, schedule, command string) {
		fl := Flags{MaxCPU: cpu, MaxMemory: mem, MaxIOBPS: io, CPUCores: cores, MaxPIDs: pids, Network: network, Name: name, Schedule: schedule}
		spec, err := Build(fl, command, nil, fuzzNow)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "--") && line != "no command given" {
					t.Fatalf("Build(%+v, %q): message %q names no flag", fl, command, line)
				}
			}
			return
		}
		if cpu < 0 || mem < 0 || io < 0 || pids < 0 || command == "" {
			t.Fatalf("Build accepted %+v %q", fl, command)
		}
		if len(name) > maxNameLen || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
			t.Fatalf("Build accepted name %q", name)
		}
		if network != "" && (len(network) > maxNetworkLen || strings.ContainsAny(network, "/: \t\n\x00.")) {
			t.Fatalf("Build accepted network %q", network)
		}
		if cores != "" {
			for _, part := range strings.Split(cores, ",") {
				lo, hi, _ := strings.Cut(part, "-")
				if lo == "" || strings.Trim(lo+hi, "0123456789") != "" {
					t.Fatalf("Build accepted cores %q", cores)
				}
			}
		}
		if schedule != "" {
			at, err := ParseSchedule(schedule, fuzzNow)
			if err != nil || !at.After(fuzzNow) || at.Sub(fuzzNow) > maxScheduleAge {
				t.Fatalf("Build accepted schedule %q (%v, %v)", schedule, at, err)
			}
		}
		if spec.GetCommand() != command || spec.GetLimits().GetCpuCores() != cores || spec.GetSchedule() != schedule {
			t.Fatalf("Build changed what it was given: %v", spec)
		}
	})
}

// FuzzParseSchedule: any accepted schedule falls due after now and within a
// year, and a refusal names the flag.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"30min", "2h30m", "1hour", "45s", "0s", "-1h", "1d1d", "2025-07-20T15:30:00",
		"2025-07-20T15:30:00Z", "2030-01-01T00:00:00Z", "9223372036854775807s", "1h ", "h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at, err := ParseSchedule(s, fuzzNow)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--schedule ") {
				t.Fatalf("ParseSchedule(%q): %v names no flag", s, err)
			}
			return
		}
		if !at.After(fuzzNow) || at.Sub(fuzzNow) > maxScheduleAge {
			t.Fatalf("ParseSchedule(%q) = %v, outside (now, now+1y]", s, at)
		}
	})
}
