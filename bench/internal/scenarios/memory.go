package scenarios

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/joblet-dev/joblet/bench/internal/suite"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// ServiceMemory reads the memory of every process in pids.json and of the
// supervisor.
func ServiceMemory(s *suite.Suite) (map[string]suite.Memory, error) {
	pids, err := s.Pids()
	if err != nil {
		return nil, err
	}
	out := map[string]suite.Memory{}
	for name, pid := range pids {
		m, err := suite.MemoryOf(pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = m
	}
	return out, nil
}

// Total adds up the RSS and PSS of several processes.
func Total(ms map[string]suite.Memory) suite.Memory {
	var t suite.Memory
	for _, m := range ms {
		t.RSS += m.RSS
		t.PSS += m.PSS
	}
	return t
}

// Overhead is what n running jobs cost the suite.
type Overhead struct {
	Jobs        int
	Services    suite.Memory // every service and the supervisor, with the jobs running
	Helpers     suite.Memory // the suite's own per-job processes (job inits and the like)
	HelperCount int
	Commands    suite.Memory // the jobs' commands themselves: not overhead
	// Shims and Inits split Helpers: the services' children (each job's
	// shim) and theirs (each job's init), with their counts.
	Shims, Inits         suite.Memory
	ShimCount, InitCount int
}

// RunningOverhead starts n `sleep 60` jobs, measures the suite and its
// per-job processes while they all run, then stops them and waits for
// their ends.
func RunningOverhead(ctx context.Context, c jobletv1.JobServiceClient, s *suite.Suite, n int) (Overhead, error) {
	ids, startErr := parallel(n, 8, func(int) (string, error) {
		resp, err := c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "sleep", Args: []string{"60"}, Network: "none"}})
		if err != nil {
			return "", fmt.Errorf("RunJob: %w", err)
		}
		if st := resp.GetJob().GetState(); st != jobletv1.JobState_JOB_STATE_RUNNING {
			return resp.GetJob().GetId(), fmt.Errorf("job %s is %v, not running: %s", resp.GetJob().GetId(), st, resp.GetJob().GetReason())
		}
		return resp.GetJob().GetId(), nil
	})
	var o Overhead
	var measureErr error
	if startErr == nil {
		// Let start-up allocations settle, and the shims park (2 s into
		// their jobs, isolator/shim/shimproc/park.go), before measuring:
		// what a running job costs for the rest of its life.
		time.Sleep(4 * time.Second)
		o, measureErr = measureRunning(s, n)
	}
	_, stopErr := parallel(len(ids), 16, func(i int) (string, error) {
		if ids[i] == "" {
			return "", nil
		}
		if _, err := c.StopJob(ctx, &jobletv1.StopJobRequest{Id: ids[i]}); err != nil {
			return "", fmt.Errorf("StopJob %s: %w", ids[i], err)
		}
		_, err := WaitEnd(ctx, c, ids[i])
		return "", err
	})
	if startErr != nil {
		return o, startErr
	}
	if measureErr != nil {
		return o, measureErr
	}
	return o, stopErr
}

func measureRunning(s *suite.Suite, n int) (Overhead, error) {
	o := Overhead{Jobs: n}
	svc, err := ServiceMemory(s)
	if err != nil {
		return o, err
	}
	o.Services = Total(svc)
	pids, err := s.Pids()
	if err != nil {
		return o, err
	}
	isService := map[int]bool{}
	for _, pid := range pids {
		isService[pid] = true
	}
	// A service's children are the suite's own per-job processes: each
	// job's shim, and the shim's child, the job's init. The init's
	// descendants are the job's commands.
	helpers := map[string]int{}
	addHelper := func(pid int, kind *suite.Memory, count *int) {
		if m, err := suite.MemoryOf(pid); err == nil {
			o.Helpers.RSS += m.RSS
			o.Helpers.PSS += m.PSS
			o.HelperCount++
			kind.RSS += m.RSS
			kind.PSS += m.PSS
			*count++
			helpers[fmt.Sprintf("job helper %d", pid)] = pid
		}
	}
	for _, pid := range pids {
		for _, shim := range suite.Children(pid) {
			if isService[shim] {
				continue
			}
			addHelper(shim, &o.Shims, &o.ShimCount)
			for _, init := range suite.Children(shim) {
				addHelper(init, &o.Inits, &o.InitCount)
				for _, d := range suite.Descendants(init) {
					if m, err := suite.MemoryOf(d); err == nil {
						o.Commands.RSS += m.RSS
						o.Commands.PSS += m.PSS
					}
				}
			}
		}
	}
	// The helpers must be gone after shutdown too.
	s.Remember(helpers)
	return o, nil
}

// parallel calls f(0..n-1) with at most width at once and returns the
// results in order and the first error.
func parallel(n, width int, f func(int) (string, error)) ([]string, error) {
	out := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}
