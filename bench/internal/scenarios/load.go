package scenarios

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// LoadResult is what many jobs through the API at once gave.
type LoadResult struct {
	Wall      time.Duration
	Latencies []time.Duration // RunJob to end recorded, of the jobs that succeeded
	Failures  []error         // jobs that could not be started or did not complete with 0
}

// Load runs `/bin/true` total times with concurrency workers, each starting
// a job and waiting for its end before the next.
func Load(ctx context.Context, c jobletv1.JobServiceClient, total, concurrency int) LoadResult {
	var (
		next atomic.Int64
		mu   sync.Mutex
		res  LoadResult
		wg   sync.WaitGroup
	)
	spec := &jobletv1.JobSpec{Command: "/bin/true", Network: "none"}
	t0 := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				s := time.Now()
				job, err := RunToEnd(ctx, c, spec)
				if err == nil {
					err = CheckSuccess(job)
				}
				d := time.Since(s)
				mu.Lock()
				if err != nil {
					res.Failures = append(res.Failures, err)
				} else {
					res.Latencies = append(res.Latencies, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Wall = time.Since(t0)
	return res
}
