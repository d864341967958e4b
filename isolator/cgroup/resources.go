package cgroup

import (
	"github.com/opencontainers/cgroups"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// cpuPeriod is the CFS period in microseconds (the kernel default): a quota
// of percent × period / 100 per period gives percent of one CPU.
const cpuPeriod = 100000

// resources maps effective limits (see limits.Resolve: zero = unlimited) to
// the library's controller-neutral description. dev is the disk to throttle
// when MaxIoBps is set. Swap is handled by each backend, which knows whether
// the kernel accounts it.
func resources(l *jobletv1.Limits, dev device) *cgroups.Resources {
	r := &cgroups.Resources{SkipDevices: true}
	if l.MaxCpuPercent > 0 {
		r.CpuPeriod = cpuPeriod
		r.CpuQuota = int64(l.MaxCpuPercent) * cpuPeriod / 100
	}
	if l.MaxMemoryMb > 0 {
		r.Memory = int64(l.MaxMemoryMb) << 20
	}
	r.CpusetCpus = l.CpuCores
	if l.MaxPids > 0 {
		pids := int64(l.MaxPids)
		r.PidsLimit = &pids
	}
	if l.MaxIoBps > 0 {
		rate := uint64(l.MaxIoBps)
		r.BlkioThrottleReadBpsDevice = []*cgroups.ThrottleDevice{cgroups.NewThrottleDevice(dev.major, dev.minor, rate)}
		r.BlkioThrottleWriteBpsDevice = []*cgroups.ThrottleDevice{cgroups.NewThrottleDevice(dev.major, dev.minor, rate)}
	}
	return r
}
