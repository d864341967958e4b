package limits

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/joblet-dev/joblet/proto/config"
)

// Host is what the machine offers; Resolve checks requests against it.
type Host struct {
	OnlineCPUs []int // sorted, from /sys/devices/system/cpu/online
	MemoryMB   int   // MemTotal from /proc/meminfo
}

// NumCPU is the number of online CPUs.
func (h Host) NumCPU() int { return len(h.OnlineCPUs) }

// DetectHost reads the online CPUs and total memory of this machine.
func DetectHost() (Host, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return Host{}, fmt.Errorf("read online CPUs: %w", err)
	}
	cpus, err := ParseCPUList(strings.TrimSpace(string(b)))
	if err != nil {
		return Host{}, fmt.Errorf("parse online CPUs %q: %w", b, err)
	}
	mem, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return Host{}, fmt.Errorf("read meminfo: %w", err)
	}
	kb, err := memTotalKB(string(mem))
	if err != nil {
		return Host{}, err
	}
	return Host{OnlineCPUs: cpus, MemoryMB: int(kb / 1024)}, nil
}

// memTotalKB finds "MemTotal: N kB" in /proc/meminfo text.
func memTotalKB(meminfo string) (int64, error) {
	for line := range strings.SplitSeq(meminfo, "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

// DefaultsFromConfig takes the job defaults and maxima from the daemon
// configuration.
func DefaultsFromConfig(j config.Joblet) Defaults {
	return Defaults{
		CPUPercent: j.DefaultCPULimit, MemoryMB: j.DefaultMemoryMB, IOBps: j.DefaultIOBps, Pids: j.DefaultPids,
		MaxCPUPercent: j.MaxCPULimit, MaxMemoryMB: j.MaxMemoryMB, MaxPids: j.MaxPids,
	}
}
