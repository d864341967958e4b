// Package limits turns the resource limits a client asks for into the limits
// a job runs with: it checks every value against the host and the daemon's
// policy and fills in the defaults. It is pure validation: no root, no
// cgroups, no kernel writes; the cgroup package applies the result.
package limits

import (
	"errors"
	"fmt"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

const (
	// MinMemoryMB is the smallest memory limit accepted: below it even a
	// shell cannot start, and the job would die confusingly at exec.
	MinMemoryMB = 4
	// MinPids is the smallest pids limit accepted. The job's init (the Go
	// runtime, about 8 threads) is in the job's cgroup and counts against
	// the limit too; below this it cannot even start the command.
	MinPids = 16
	// DefaultPids applies when neither the request nor the daemon
	// configuration sets a pids limit, so no job is ever without one.
	DefaultPids = 1024
	// PidMaxLimit is the kernel's largest possible pid_max; the default
	// ceiling of a pids limit.
	PidMaxLimit = 4194304
)

// Defaults is the daemon's limit policy. For the default values zero means
// "no limit" (Pids: DefaultPids); for the maxima zero means "the host's
// capacity" (CPUs × 100, total memory, PidMaxLimit).
type Defaults struct {
	CPUPercent int   // percent of one CPU
	MemoryMB   int   // megabytes (MiB)
	IOBps      int64 // bytes per second, read and write each
	Pids       int

	MaxCPUPercent int
	MaxMemoryMB   int
	MaxPids       int
}

// ceilings are the effective maxima for a host.
type ceilings struct{ cpu, memory, pids int }

func (d Defaults) ceilings(h Host) ceilings {
	c := ceilings{cpu: h.NumCPU() * 100, memory: h.MemoryMB, pids: PidMaxLimit}
	if d.MaxCPUPercent > 0 {
		c.cpu = min(c.cpu, d.MaxCPUPercent)
	}
	if d.MaxMemoryMB > 0 {
		c.memory = min(c.memory, d.MaxMemoryMB)
	}
	if d.MaxPids > 0 {
		c.pids = min(c.pids, d.MaxPids)
	}
	return c
}

// Validate checks the policy itself; call it once at start-up so a bad
// configuration fails the daemon rather than every job.
func (d Defaults) Validate(h Host) error {
	c := d.ceilings(h)
	var errs []error
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"defaultCpuLimit", int64(d.CPUPercent)}, {"defaultMemoryLimit", int64(d.MemoryMB)},
		{"defaultIoLimit", d.IOBps}, {"defaultPidsLimit", int64(d.Pids)},
		{"maxCpuLimit", int64(d.MaxCPUPercent)}, {"maxMemoryLimit", int64(d.MaxMemoryMB)},
		{"maxPidsLimit", int64(d.MaxPids)},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", n.name, n.v))
		}
	}
	if d.CPUPercent > c.cpu {
		errs = append(errs, fmt.Errorf("defaultCpuLimit %d exceeds the maximum %d", d.CPUPercent, c.cpu))
	}
	if d.MemoryMB > 0 && d.MemoryMB < MinMemoryMB {
		errs = append(errs, fmt.Errorf("defaultMemoryLimit %d MB is below the %d MB minimum", d.MemoryMB, MinMemoryMB))
	}
	if d.MemoryMB > c.memory {
		errs = append(errs, fmt.Errorf("defaultMemoryLimit %d MB exceeds the maximum %d MB", d.MemoryMB, c.memory))
	}
	if d.Pids > 0 && d.Pids < MinPids {
		errs = append(errs, fmt.Errorf("defaultPidsLimit %d is below the %d minimum", d.Pids, MinPids))
	}
	if d.Pids > c.pids {
		errs = append(errs, fmt.Errorf("defaultPidsLimit %d exceeds the maximum %d", d.Pids, c.pids))
	}
	return errors.Join(errs...)
}

// Resolve checks a request's limits and returns the limits the job runs
// with: every zero field replaced by the daemon default. In the result, a
// zero CPU, memory or IO value means unlimited, an empty core list means all
// online CPUs, and the core list is in canonical form ("0-1,4"). Errors are
// errdefs.ErrInvalidArgument with a message naming the rnx flag.
//
// A default CPU limit larger than the chosen cores can use is lowered to
// cores × 100; an explicit one is rejected, since the user asked for
// something the job can never get.
func Resolve(req *jobletv1.Limits, d Defaults, h Host) (*jobletv1.Limits, error) {
	if req == nil {
		req = &jobletv1.Limits{}
	}
	bad := func(format string, args ...any) error {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, format, args...)
	}
	switch {
	case req.MaxCpuPercent < 0:
		return nil, bad("--max-cpu=%d is negative (0 means the default)", req.MaxCpuPercent)
	case req.MaxMemoryMb < 0:
		return nil, bad("--max-memory=%d is negative (0 means the default)", req.MaxMemoryMb)
	case req.MaxIoBps < 0:
		return nil, bad("--max-iobps=%d is negative (0 means the default)", req.MaxIoBps)
	case req.MaxPids < 0:
		return nil, bad("--max-pids=%d is negative (0 means the default)", req.MaxPids)
	}
	c := d.ceilings(h)
	out := &jobletv1.Limits{
		MaxCpuPercent: int32(d.CPUPercent),
		MaxMemoryMb:   int32(d.MemoryMB),
		MaxIoBps:      d.IOBps,
		MaxPids:       int32(d.Pids),
	}
	if out.MaxPids == 0 {
		out.MaxPids = DefaultPids
	}

	coreCap := c.cpu
	if req.CpuCores != "" {
		cores, err := ParseCPUList(req.CpuCores)
		if err != nil {
			return nil, bad("--cpu-cores=%q: %v", req.CpuCores, err)
		}
		online := make(map[int]bool, len(h.OnlineCPUs))
		for _, cpu := range h.OnlineCPUs {
			online[cpu] = true
		}
		for _, cpu := range cores {
			if !online[cpu] {
				return nil, bad("--cpu-cores=%q: CPU %d is not online (online CPUs: %s)",
					req.CpuCores, cpu, FormatCPUList(h.OnlineCPUs))
			}
		}
		out.CpuCores = FormatCPUList(cores)
		coreCap = len(cores) * 100
		out.MaxCpuPercent = int32(min(int(out.MaxCpuPercent), coreCap))
	}

	if v := int(req.MaxCpuPercent); v > 0 {
		switch {
		case v > h.NumCPU()*100:
			return nil, bad("--max-cpu=%d exceeds the host's %d CPUs (at most %d)", v, h.NumCPU(), h.NumCPU()*100)
		case v > c.cpu:
			return nil, bad("--max-cpu=%d exceeds the daemon's maximum of %d", v, c.cpu)
		case v > coreCap:
			return nil, bad("--max-cpu=%d exceeds what --cpu-cores=%s can use (at most %d)", v, out.CpuCores, coreCap)
		}
		out.MaxCpuPercent = int32(v)
	}
	if v := int(req.MaxMemoryMb); v > 0 {
		switch {
		case v < MinMemoryMB:
			return nil, bad("--max-memory=%d is below the %d MB minimum", v, MinMemoryMB)
		case v > c.memory:
			return nil, bad("--max-memory=%d exceeds the maximum of %d MB", v, c.memory)
		}
		out.MaxMemoryMb = int32(v)
	}
	if req.MaxIoBps > 0 {
		out.MaxIoBps = req.MaxIoBps
	}
	if v := int(req.MaxPids); v > 0 {
		switch {
		case v < MinPids:
			return nil, bad("--max-pids=%d is below the %d minimum (the job's init counts too)", v, MinPids)
		case v > c.pids:
			return nil, bad("--max-pids=%d exceeds the maximum of %d", v, c.pids)
		}
		out.MaxPids = int32(v)
	}
	return out, nil
}
