package integration

import (
	"fmt"
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// BenchmarkStatsAndRunning times what a job's end reads from its cgroup:
// Stats (the shim's measure of the job's usage) and Running (the
// isolator's check that nothing of the job can run before its end is
// recorded), on an empty job cgroup.
func BenchmarkStatsAndRunning(b *testing.B) {
	p := requireRoot(b)
	benchRuns++
	j, err := p.Create(fmt.Sprintf("bench-stats-%d", benchRuns), &jobletv1.Limits{MaxPids: 1024}, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := j.Destroy(); err != nil {
			b.Errorf("Destroy: %v", err)
		}
	}()
	b.Run("Stats", func(b *testing.B) {
		for range b.N {
			if _, err := j.Stats(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Running", func(b *testing.B) {
		for range b.N {
			if _, err := j.Running(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
