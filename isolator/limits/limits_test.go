package limits

import (
	"errors"
	"testing"

	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"google.golang.org/protobuf/proto"
)

var twoCPUs = Host{OnlineCPUs: []int{0, 1}, MemoryMB: 2048}

func TestResolveDefaults(t *testing.T) {
	tests := []struct {
		name string
		req  *jobletv1.Limits
		d    Defaults
		want *jobletv1.Limits
	}{
		{"nil request, empty policy", nil, Defaults{},
			&jobletv1.Limits{MaxPids: DefaultPids}},
		{"zeros take the defaults", &jobletv1.Limits{},
			Defaults{CPUPercent: 50, MemoryMB: 256, IOBps: 1 << 20, Pids: 100},
			&jobletv1.Limits{MaxCpuPercent: 50, MaxMemoryMb: 256, MaxIoBps: 1 << 20, MaxPids: 100}},
		{"explicit values win", &jobletv1.Limits{MaxCpuPercent: 150, MaxMemoryMb: 64, MaxIoBps: 10485760, CpuCores: "0-1", MaxPids: 64},
			Defaults{CPUPercent: 50, MemoryMB: 256, Pids: 100},
			&jobletv1.Limits{MaxCpuPercent: 150, MaxMemoryMb: 64, MaxIoBps: 10485760, CpuCores: "0-1", MaxPids: 64}},
		{"core list canonicalised", &jobletv1.Limits{CpuCores: "1,0,1"}, Defaults{},
			&jobletv1.Limits{CpuCores: "0-1", MaxPids: DefaultPids}},
		{"default CPU lowered to the chosen cores", &jobletv1.Limits{CpuCores: "1"}, Defaults{CPUPercent: 200},
			&jobletv1.Limits{MaxCpuPercent: 100, CpuCores: "1", MaxPids: DefaultPids}},
		{"limits at the ceilings", &jobletv1.Limits{MaxCpuPercent: 200, MaxMemoryMb: 2048, MaxPids: PidMaxLimit}, Defaults{},
			&jobletv1.Limits{MaxCpuPercent: 200, MaxMemoryMb: 2048, MaxPids: PidMaxLimit}},
		{"memory at the floor", &jobletv1.Limits{MaxMemoryMb: MinMemoryMB}, Defaults{},
			&jobletv1.Limits{MaxMemoryMb: MinMemoryMB, MaxPids: DefaultPids}},
		{"pids at the floor", &jobletv1.Limits{MaxPids: MinPids}, Defaults{},
			&jobletv1.Limits{MaxPids: MinPids}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.req, tt.d, twoCPUs)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("Resolve = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResolveRejects(t *testing.T) {
	policy := Defaults{MaxCPUPercent: 150, MaxMemoryMB: 1024, MaxPids: 4096}
	tests := []struct {
		name string
		req  *jobletv1.Limits
		d    Defaults
		want string
	}{
		{"negative cpu", &jobletv1.Limits{MaxCpuPercent: -5}, Defaults{}, "--max-cpu=-5 is negative (0 means the default)"},
		{"negative memory", &jobletv1.Limits{MaxMemoryMb: -1}, Defaults{}, "--max-memory=-1 is negative (0 means the default)"},
		{"negative iobps", &jobletv1.Limits{MaxIoBps: -1}, Defaults{}, "--max-iobps=-1 is negative (0 means the default)"},
		{"negative pids", &jobletv1.Limits{MaxPids: -1}, Defaults{}, "--max-pids=-1 is negative (0 means the default)"},
		{"cpu above host", &jobletv1.Limits{MaxCpuPercent: 201}, Defaults{}, "--max-cpu=201 exceeds the host's 2 CPUs (at most 200)"},
		{"cpu above policy", &jobletv1.Limits{MaxCpuPercent: 151}, policy, "--max-cpu=151 exceeds the daemon's maximum of 150"},
		{"cpu above chosen cores", &jobletv1.Limits{MaxCpuPercent: 150, CpuCores: "1"}, Defaults{}, "--max-cpu=150 exceeds what --cpu-cores=1 can use (at most 100)"},
		{"memory below floor", &jobletv1.Limits{MaxMemoryMb: 3}, Defaults{}, "--max-memory=3 is below the 4 MB minimum"},
		{"pids below floor", &jobletv1.Limits{MaxPids: 15}, Defaults{}, "--max-pids=15 is below the 16 minimum (the job's init counts too)"},
		{"memory above host", &jobletv1.Limits{MaxMemoryMb: 2049}, Defaults{}, "--max-memory=2049 exceeds the maximum of 2048 MB"},
		{"memory above policy", &jobletv1.Limits{MaxMemoryMb: 1025}, policy, "--max-memory=1025 exceeds the maximum of 1024 MB"},
		{"pids above policy", &jobletv1.Limits{MaxPids: 4097}, policy, "--max-pids=4097 exceeds the maximum of 4096"},
		{"pids above kernel", &jobletv1.Limits{MaxPids: PidMaxLimit + 1}, Defaults{}, "--max-pids=4194305 exceeds the maximum of 4194304"},
		{"cores empty element", &jobletv1.Limits{CpuCores: "1,,2"}, Defaults{}, `--cpu-cores="1,,2": empty element`},
		{"cores reversed", &jobletv1.Limits{CpuCores: "3-1"}, Defaults{}, `--cpu-cores="3-1": range "3-1" is reversed`},
		{"cores letters", &jobletv1.Limits{CpuCores: "a"}, Defaults{}, `--cpu-cores="a": "a" is not a CPU number`},
		{"cores negative", &jobletv1.Limits{CpuCores: "-1"}, Defaults{}, `--cpu-cores="-1": missing CPU number`},
		{"cores trailing comma", &jobletv1.Limits{CpuCores: "0,"}, Defaults{}, `--cpu-cores="0,": empty element`},
		{"cores open range", &jobletv1.Limits{CpuCores: "0-"}, Defaults{}, `--cpu-cores="0-": missing CPU number`},
		{"cores space", &jobletv1.Limits{CpuCores: "0, 1"}, Defaults{}, `--cpu-cores="0, 1": " 1" is not a CPU number`},
		{"cores huge", &jobletv1.Limits{CpuCores: "0-99999"}, Defaults{}, `--cpu-cores="0-99999": CPU 99999 is out of range (at most 8191)`},
		{"cores offline", &jobletv1.Limits{CpuCores: "1-2"}, Defaults{}, `--cpu-cores="1-2": CPU 2 is not online (online CPUs: 0-1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.req, tt.d, twoCPUs)
			if err == nil {
				t.Fatalf("Resolve = %v, want error %q", got, tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v is not ErrInvalidArgument", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tt.want)
			}
		})
	}
}

func TestDefaultsValidate(t *testing.T) {
	if err := (Defaults{CPUPercent: 100, MemoryMB: 512, Pids: 100}).Validate(twoCPUs); err != nil {
		t.Fatalf("valid defaults rejected: %v", err)
	}
	tests := []struct {
		d    Defaults
		want string
	}{
		{Defaults{CPUPercent: -1}, "defaultCpuLimit -1 is negative"},
		{Defaults{CPUPercent: 300}, "defaultCpuLimit 300 exceeds the maximum 200"},
		{Defaults{MemoryMB: 2}, "defaultMemoryLimit 2 MB is below the 4 MB minimum"},
		{Defaults{Pids: 8}, "defaultPidsLimit 8 is below the 16 minimum"},
		{Defaults{MemoryMB: 4096}, "defaultMemoryLimit 4096 MB exceeds the maximum 2048 MB"},
		{Defaults{Pids: 20, MaxPids: 17}, "defaultPidsLimit 20 exceeds the maximum 17"},
		{Defaults{IOBps: -1}, "defaultIoLimit -1 is negative"},
	}
	for _, tt := range tests {
		err := tt.d.Validate(twoCPUs)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Validate(%+v) = %v, want %q", tt.d, err, tt.want)
		}
	}
}

func TestMemTotal(t *testing.T) {
	kb, err := memTotalKB("MemFree: 10 kB\nMemTotal:        2097152 kB\n")
	if err != nil || kb != 2097152 {
		t.Fatalf("memTotalKB = %d, %v", kb, err)
	}
	if _, err := memTotalKB("MemFree: 10 kB\n"); err == nil {
		t.Fatal("memTotalKB accepted text without MemTotal")
	}
}

func TestDetectHost(t *testing.T) {
	h, err := DetectHost()
	if err != nil {
		t.Fatalf("DetectHost: %v", err)
	}
	if h.NumCPU() == 0 || h.MemoryMB == 0 {
		t.Fatalf("DetectHost = %+v, want CPUs and memory", h)
	}
}

func TestDefaultsFromConfig(t *testing.T) {
	got := DefaultsFromConfig(config.Joblet{DefaultCPULimit: 50, DefaultMemoryMB: 256, DefaultIOBps: 1000, DefaultPids: 100,
		MaxCPULimit: 150, MaxMemoryMB: 1024, MaxPids: 4096})
	want := Defaults{CPUPercent: 50, MemoryMB: 256, IOBps: 1000, Pids: 100, MaxCPUPercent: 150, MaxMemoryMB: 1024, MaxPids: 4096}
	if got != want {
		t.Errorf("DefaultsFromConfig = %+v, want %+v", got, want)
	}
}
