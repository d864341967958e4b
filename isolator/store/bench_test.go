package store

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// BenchmarkSave saves new records from 32 goroutines at once, as the
// isolator does under load, on the test's temporary directory's disk: the
// group commit shares each fdatasync among the Saves waiting for it
// (fsyncs/op).
func BenchmarkSave(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Uint64
	synced := s.syncs.Load()
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := strconv.FormatUint(next.Add(1), 10)
			r := Record{Job: &jobletv1.Job{Id: id, Command: "/bin/true", State: jobletv1.JobState_JOB_STATE_RUNNING, Hostname: "job-" + id}}
			if err := s.Save(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(s.syncs.Load()-synced)/float64(b.N), "fsyncs/op")
}
