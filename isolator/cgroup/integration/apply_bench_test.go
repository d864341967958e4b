package integration

import (
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// benchRuns numbers the job cgroups of the benchmarks: the framework calls
// a benchmark function more than once.
var benchRuns int

// applyGap is the pause before each timed Apply. The kernel's cgroup
// migration lock stays cheap for writes that follow each other closely and
// pays RCU grace periods once it has gone idle (measured here: 7 moves in
// ~0.1 ms back to back, ~9 ms after 100 ms of quiet), so a job starting on
// a quiet isolator is the idle case.
const applyGap = 100 * time.Millisecond

// BenchmarkApply times Job.Apply, the move of a fresh process into a job's
// cgroup that the job's init waits for at its start gate on cgroup v1 (on
// v2 Apply is not used: the init starts inside). Each write to a v1
// cgroup.procs waits for an RCU grace period in the kernel, so the time
// grows with the hierarchies the job joins: a default job's (memory, pids,
// cpuacct, freezer) against one whose limits use every controller. It
// reports the median of the timed Applies, not only the mean.
func BenchmarkApply(b *testing.B) {
	for _, c := range []struct {
		name string
		l    *jobletv1.Limits
	}{
		{"default", &jobletv1.Limits{MaxPids: 1024}},
		{"all-limits", &jobletv1.Limits{MaxPids: 1024, MaxCpuPercent: 100, CpuCores: "0", MaxIoBps: 1 << 30}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := requireRoot(b)
			benchRuns++
			j, err := p.Create(fmt.Sprintf("bench-apply-%d", benchRuns), c.l, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := j.Destroy(); err != nil {
					b.Errorf("Destroy: %v", err)
				}
			}()
			var took []time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				time.Sleep(applyGap)
				cmd := exec.Command("sleep", "1000")
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				began := time.Now()
				err := j.Apply(cmd.Process.Pid)
				took = append(took, time.Since(began))
				b.StopTimer()
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "median-µs/apply")
			b.ReportMetric(float64(len(j.Paths())), "hierarchies")
		})
	}
}

// BenchmarkCreateDestroy times the making of a job's cgroup with its limits
// and its removal, for a default job and one that joins every hierarchy.
func BenchmarkCreateDestroy(b *testing.B) {
	for _, c := range []struct {
		name string
		l    *jobletv1.Limits
	}{
		{"default", &jobletv1.Limits{MaxPids: 1024, MaxMemoryMb: 512}},
		{"all-limits", &jobletv1.Limits{MaxPids: 1024, MaxMemoryMb: 512, MaxCpuPercent: 100, CpuCores: "0", MaxIoBps: 1 << 30}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := requireRoot(b)
			work := b.TempDir()
			for range b.N {
				benchRuns++
				j, err := p.Create(fmt.Sprintf("bench-create-%d", benchRuns), c.l, work)
				if err != nil {
					b.Fatal(err)
				}
				if err := j.Destroy(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
