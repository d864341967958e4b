package jobs

import (
	"fmt"
	"syscall"
	"time"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Cgroups makes each job's cgroup. The production one is the cgroup
// package's Parent; tests use a fake.
type Cgroups interface {
	// Create makes job id's cgroup with the effective limits l written
	// before any process is in it. ioDevice is what an IO limit throttles:
	// the node of the job's /work disk (see WorkDisks). On error nothing is
	// left.
	Create(id string, l *jobletv1.Limits, ioDevice string) (Cgroup, error)
}

// Cgroup is one job's cgroup.
type Cgroup interface {
	// UseCgroupFD and Apply put the job's init in the cgroup before it runs
	// anything of the job (see the sandbox's start gate).
	UseCgroupFD(attr *syscall.SysProcAttr) (bool, error)
	Apply(pid int) error
	// Signal sends sig to every process in the cgroup.
	Signal(sig syscall.Signal) error
	// KillAll kills every process in the cgroup and waits until none is left.
	KillAll() error
	// Running lists the processes in the cgroup that can still run: not
	// the ones already exiting, which their teardown may keep in the
	// cgroup a little longer.
	Running() ([]int, error)
	// Stats reads what the job used; call it before Destroy.
	Stats() (Usage, error)
	// Destroy kills what is left and removes the cgroup; it is idempotent.
	Destroy() error
}

// Usage is what a job used, from the kernel's counters.
type Usage struct {
	CPUTime         time.Duration
	MemoryPeakBytes uint64
	OOMKills        uint64 // processes of the job the kernel killed for memory
}

func (u Usage) proto() *jobletv1.Usage {
	return &jobletv1.Usage{
		CpuTimeUsec:     u.CPUTime.Microseconds(),
		MemoryPeakBytes: int64(u.MemoryPeakBytes),
		OomKills:        int64(u.OOMKills),
	}
}

// memoryLimit describes a job's memory limit for a reason text.
func memoryLimit(l *jobletv1.Limits) string {
	if mb := l.GetMaxMemoryMb(); mb > 0 {
		return fmt.Sprintf("limit %d MB", mb)
	}
	return "no memory limit"
}

// oomKilledReason is the reason of a job whose command the kernel killed for
// memory.
func oomKilledReason(l *jobletv1.Limits) string {
	return "out of memory: killed by the kernel (" + memoryLimit(l) + ")"
}

// oomNote is added to the reason of a job that went on after the kernel
// killed some of its processes for memory (cgroup v1 kills only the
// process that overran, not the whole job).
func oomNote(n uint64, l *jobletv1.Limits) string {
	what := "1 process"
	if n != 1 {
		what = fmt.Sprintf("%d processes", n)
	}
	return fmt.Sprintf("out of memory: the kernel killed %s of the job (%s)", what, memoryLimit(l))
}
