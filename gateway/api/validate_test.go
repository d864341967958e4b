package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

func TestValidateID(t *testing.T) {
	for id, want := range map[string]string{
		"1":                       "",
		"18446744073709551615":    "",
		"":                        "job id is required",
		"123456789012345678901":   "longer than 20 digits",
		"-1":                      "must be decimal digits",
		"1e3":                     "must be decimal digits",
		" 1":                      "must be decimal digits",
		"../1":                    "must be decimal digits",
		"١":                       "must be decimal digits", // Arabic-Indic one
		"1\x00":                   "must be decimal digits",
		strings.Repeat("a", 1000): strings.Repeat("a", maxShownBytes) + "...",
	} {
		err := ValidateID(id)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", id, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: got %v, want invalid argument %q", id, err, want)
		}
	}
}

func TestValidateSpec(t *testing.T) {
	ok := func() *jobletv1.JobSpec {
		return &jobletv1.JobSpec{Command: "echo", Args: []string{"hi"}, Limits: &jobletv1.Limits{MaxCpuPercent: 150, CpuCores: "0-3"}}
	}
	many := make([]string, MaxArgs+1)
	for i := range many {
		many[i] = "a"
	}
	for _, tc := range []struct {
		name string
		mod  func(*jobletv1.JobSpec) *jobletv1.JobSpec
		want string
	}{
		{"valid", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { return s }, ""},
		{"nil", func(*jobletv1.JobSpec) *jobletv1.JobSpec { return nil }, "job spec is required"},
		{"empty command", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Command = ""; return s }, "command is required"},
		{"blank command", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Command = " \t"; return s }, "command is required"},
		{"NUL in command", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Command = "ec\x00ho"; return s }, "command must not contain NUL"},
		{"NUL in arg", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Args = []string{"a\x00"}; return s }, "arguments must not contain NUL"},
		{"long command", func(s *jobletv1.JobSpec) *jobletv1.JobSpec {
			s.Command = strings.Repeat("c", MaxCommandLen+1)
			return s
		}, "command too long"},
		{"many args", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Args = many; return s }, "too many arguments"},
		{"long args", func(s *jobletv1.JobSpec) *jobletv1.JobSpec {
			s.Args = []string{strings.Repeat("a", MaxArgsBytes+1)}
			return s
		}, "arguments too long"},
		{"long name", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Name = strings.Repeat("n", MaxNameLen+1); return s }, "name too long"},
		{"NUL in network", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Network = "br\x00"; return s }, "network must not contain NUL"},
		{"long schedule", func(s *jobletv1.JobSpec) *jobletv1.JobSpec {
			s.Schedule = strings.Repeat("1", MaxScheduleLen+1)
			return s
		}, "schedule too long"},
		{"long cores", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Limits.CpuCores = strings.Repeat("0,", 200); return s }, "cpu cores too long"},
		{"negative memory", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Limits.MaxMemoryMb = -1; return s }, "max memory must not be negative"},
		{"negative io", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Limits.MaxIoBps = -5; return s }, "max io bps must not be negative"},
		{"no limits", func(s *jobletv1.JobSpec) *jobletv1.JobSpec { s.Limits = nil; return s }, ""},
	} {
		err := ValidateSpec(tc.mod(ok()))
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want invalid argument %q", tc.name, err, tc.want)
		}
	}
}

func TestValidateNetworkName(t *testing.T) {
	for name, want := range map[string]string{
		"a":                     "",
		"backend":               "",
		"team-2":                "",
		"a1-b2":                 "",
		"none":                  "", // reserved names are netd's to refuse
		strings.Repeat("a", 32): "",
		"":                      "network name is required",
		strings.Repeat("a", 33): `"` + strings.Repeat("a", maxShownBytes) + `..."`,
		"Backend":               "use 1 to 32 lowercase letters",
		"1net":                  "starting with a letter",
		"-net":                  "starting with a letter",
		"net-":                  "use 1 to 32",
		"my_net":                "use 1 to 32",
		"a.b":                   "use 1 to 32",
		"../x":                  "use 1 to 32",
		"net\x1b[2J":            `"net\x1b[2J"`,
		"netä":                  "use 1 to 32",
	} {
		err := ValidateNetworkName(name)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: got %v, want invalid argument %q", name, err, want)
		}
	}
}

func TestValidateCIDR(t *testing.T) {
	for cidr, want := range map[string]string{
		"10.1.0.0/24":                     "",
		"10.1.0.5/24":                     "", // not canonical: netd says what was meant
		"fd00::/64":                       "", // netd explains that only IPv4 is supported
		strings.Repeat("f", MaxCIDRLen):   "",
		"":                                "CIDR is required",
		strings.Repeat("1", MaxCIDRLen+1): "CIDR too long",
		"10.1.0.0/24\x00":                 "CIDR must not contain NUL",
	} {
		err := ValidateCIDR(cidr)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", cidr, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: got %v, want invalid argument %q", cidr, err, want)
		}
	}
}
