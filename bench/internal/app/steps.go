package app

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/joblet-dev/joblet/bench/internal/report"
	"github.com/joblet-dev/joblet/bench/internal/scenarios"
	"github.com/joblet-dev/joblet/bench/internal/stats"
	"github.com/joblet-dev/joblet/bench/internal/suite"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

const (
	mib = 1 << 20
	mb  = 1e6
	// settle is how long memory is left to settle before it is read.
	settle = 2 * time.Second
	// serviceMemoryTarget is the ceiling for any service after the log run.
	serviceMemoryTarget = 64 * mib
)

func ms(ds []time.Duration) *stats.Summary {
	s := stats.Of(stats.Millis(ds))
	return &s
}

func one(v float64) *stats.Summary { return &stats.Summary{N: 1, Median: v, P99: v, Min: v, Max: v} }

func met(ok bool) *bool { return &ok }

// restMemory reads every service's memory once the suite has run a few jobs
// and settled: the level memory must come back to after load.
func (b *bench) restMemory(ctx context.Context) error {
	for range 10 {
		job, err := scenarios.RunToEnd(ctx, b.client, &jobletv1.JobSpec{Command: "/bin/true", Network: "none"})
		if err != nil {
			return err
		}
		if err := scenarios.CheckSuccess(job); err != nil {
			return err
		}
	}
	// The job cgroup parent exists now; it must be gone after shutdown.
	parents, err := b.suite.JobCgroupParents()
	if err != nil {
		return err
	}
	b.cgroupParents = parents
	time.Sleep(settle)
	b.rest, err = scenarios.ServiceMemory(b.suite)
	return err
}

func (b *bench) startLatency(ctx context.Context) error {
	n := b.sizes.Starts
	baselines := map[string][]time.Duration{}
	bwrapNote := ""
	for _, bl := range []struct {
		name string
		argv []string
	}{
		{"fork+exec /bin/true", scenarios.ForkExec},
		{"unshare pid,mnt,uts,ipc", scenarios.Unshare},
		{"unshare pid,mnt,uts,ipc,net", scenarios.UnshareNet},
		{"bwrap --unshare-all --share-net", scenarios.Bwrap(false)},
		{"bwrap --unshare-all", scenarios.Bwrap(true)},
	} {
		if _, err := exec.LookPath(bl.argv[0]); err != nil {
			bwrapNote = fmt.Sprintf("%s not installed (make bench installs bubblewrap)", bl.argv[0])
			b.rep.Add(report.Row{Section: "1", Name: "baseline: " + bl.name, Unit: "ms", Note: bwrapNote})
			continue
		}
		d, err := scenarios.CommandLatency(bl.argv, n)
		if err != nil {
			return err
		}
		baselines[bl.name] = d
		b.rep.Add(report.Row{Section: "1", Name: "baseline: " + bl.name, Unit: "ms", Value: ms(d)})
	}
	for _, nw := range []struct {
		network, baseline, target string
		factor                    float64
	}{
		{"none", "bwrap --unshare-all --share-net", "p50 ≤ 1.2× bwrap, p99 < 15 ms", 1.2},
		{"bridge", "bwrap --unshare-all", "p50 ≤ 1.5× bwrap --unshare-all, p99 < 15 ms", 1.5},
	} {
		row := report.Row{Section: "1", Name: "RunJob /bin/true → exit recorded, --network=" + nw.network, Unit: "ms", Baseline: nw.baseline, Target: nw.target}
		if d, ok := baselines[nw.baseline]; ok {
			row.BaselineValue = ms(d)
		}
		var d []time.Duration
		err := b.profiled("start-"+nw.network, func() (err error) {
			d, err = scenarios.StartLatency(ctx, b.client, nw.network, n)
			return err
		})
		if err != nil {
			// A network the suite does not offer yet is a finding, not a failed run.
			row.Note = "n/a: " + firstLine(err.Error())
			b.rep.Add(row)
			continue
		}
		row.Value = ms(d)
		if row.BaselineValue != nil {
			row.Met = met(row.Slowdown() <= nw.factor && row.Value.P99 < 15)
		}
		b.rep.Add(row)
	}
	return nil
}

func (b *bench) rnx() scenarios.RNX {
	return scenarios.RNX{Path: filepath.Join(b.suite.BinDir, "rnx"), Config: b.suite.AdminConfig()}
}

// rnxPause spaces the runs of the second `rnx run` figure: a server that
// has just started a job starts the next one faster (on cgroup v1 the
// kernel's migration lock skips its grace period within a burst), which
// commands typed one at a time do not get.
const rnxPause = 300 * time.Millisecond

func (b *bench) rnxRun(context.Context) error {
	for _, c := range []struct {
		name, profile string
		pause         time.Duration
	}{
		{"`rnx run true`, a new rnx process each time", "rnx-run", 0},
		{fmt.Sprintf("… one at a time, %d ms apart, as a user types them", rnxPause.Milliseconds()), "rnx-run-spaced", rnxPause},
	} {
		var d []time.Duration
		err := b.profiled(c.profile, func() (err error) {
			d, err = b.rnx().RunLatency(b.sizes.RNXRuns, c.pause, "true")
			return err
		})
		if err != nil {
			return err
		}
		v := ms(d)
		b.rep.Add(report.Row{Section: "2", Name: c.name, Unit: "ms", Value: v, Target: "p50 ≤ 15 ms", Met: met(v.Median <= 15)})
	}
	return nil
}

func (b *bench) load(ctx context.Context) error {
	var res scenarios.LoadResult
	_ = b.profiled("load", func() error {
		res = scenarios.Load(ctx, b.client, b.sizes.LoadJobs, b.sizes.LoadWidth)
		return nil
	})
	rate := float64(b.sizes.LoadJobs-len(res.Failures)) / res.Wall.Seconds()
	name := fmt.Sprintf("%d × /bin/true through the API, concurrency %d", b.sizes.LoadJobs, b.sizes.LoadWidth)
	b.rep.Add(report.Row{Section: "4", Name: name + ": jobs/s", Unit: "jobs/s", HigherIsBetter: true, Value: one(rate), Target: "≥ 150 jobs/s", Met: met(rate >= 150)})
	fails := report.Row{Section: "4", Name: name + ": failures", Value: one(float64(len(res.Failures))), Target: "0", Met: met(len(res.Failures) == 0)}
	if len(res.Failures) > 0 {
		fails.Note = "first: " + firstLine(res.Failures[0].Error()) + " (suite log kept: " + b.suite.Log + ")"
		b.suite.KeepLog = true
	}
	b.rep.Add(fails)
	b.rep.Add(report.Row{Section: "4", Name: name + ": each job's RunJob → exit recorded", Unit: "ms", Value: ms(res.Latencies)})
	time.Sleep(settle)
	after, err := scenarios.ServiceMemory(b.suite)
	if err != nil {
		return err
	}
	b.afterLoad = after
	return nil
}

func (b *bench) logs(ctx context.Context) error {
	size := b.sizes.LogBytes
	label := humanBytes(size)
	var attachedWall, attachedJob []float64
	var pipe []float64
	for i := range b.sizes.LogRuns {
		var r scenarios.LogRun
		err := b.profiled(fmt.Sprintf("log-attached-%d", i), func() (err error) {
			r, err = b.rnx().AttachedLog(ctx, b.client, size)
			return err
		})
		if err != nil {
			return err
		}
		attachedWall = append(attachedWall, float64(size)/mb/r.Wall.Seconds())
		attachedJob = append(attachedJob, float64(size)/mb/r.Job.Seconds())
		if i == 0 {
			time.Sleep(settle)
			m, err := scenarios.ServiceMemory(b.suite)
			if err != nil {
				return err
			}
			b.afterLog = m
		}
		d, err := scenarios.PipeDrain(size)
		if err != nil {
			return err
		}
		pipe = append(pipe, float64(size)/mb/d.Seconds())
	}
	pipeS := stats.Of(pipe)
	wallS := stats.Of(attachedWall)
	row := report.Row{Section: "3", Name: label + " to stdout, attached `rnx run` → /dev/null", Unit: "MB/s", HigherIsBetter: true,
		Value: &wallS, Baseline: "pipe → /dev/null", BaselineValue: &pipeS, Target: "≥ 500 MB/s", Met: met(wallS.Median >= 500)}
	b.rep.Add(row)
	jobS := stats.Of(attachedJob)
	b.rep.Add(report.Row{Section: "3", Name: "… the job's own run time, as throughput", Unit: "MB/s", HigherIsBetter: true, Value: &jobS})

	n := b.sizes.Followers
	var r scenarios.LogRun
	var durs []time.Duration
	err := b.profiled("log-followers", func() (err error) {
		r, durs, err = b.rnx().Followers(ctx, b.client, size, n)
		return err
	})
	if err != nil {
		return err
	}
	jobRate := float64(size) / mb / r.Job.Seconds()
	follow := make([]float64, len(durs))
	for i, d := range durs {
		follow[i] = float64(size) / mb / d.Seconds()
	}
	fs := stats.Of(follow)
	b.rep.Add(report.Row{Section: "3", Name: fmt.Sprintf("same job with %d `rnx log` followers: the job's own throughput", n), Unit: "MB/s", HigherIsBetter: true,
		Value: one(jobRate), Baseline: "the job, attached alone", BaselineValue: &jobS, Target: "no follower slows the job (≤ 1.1×)", Met: met(jobS.Median/jobRate <= 1.1)})
	b.rep.Add(report.Row{Section: "3", Name: fmt.Sprintf("… each of the %d followers (job created → follower done)", n), Unit: "MB/s", HigherIsBetter: true,
		Value: &fs, Baseline: "attached `rnx run`", BaselineValue: &wallS})
	return nil
}

func (b *bench) upload(context.Context) error {
	name := fmt.Sprintf("upload a %s directory (`rnx run --upload-dir`)", humanBytes(int64(b.sizes.UploadBytes)))
	r := b.rnx()
	if !r.Has("run", "--upload-dir") {
		b.rep.Add(report.Row{Section: "5", Name: name, Unit: "MB/s", Note: "n/a (uploads not built)"})
		return nil
	}
	dir, err := os.MkdirTemp("", "joblet-bench-upload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const fileSize = 1 << 20
	total, err := scenarios.MakeTree(dir, b.sizes.UploadBytes/fileSize, fileSize)
	if err != nil {
		return err
	}
	var rates []float64
	for i := range 3 {
		var d time.Duration
		err := b.profiled(fmt.Sprintf("upload-%d", i), func() (err error) {
			d, err = r.Upload(dir)
			return err
		})
		if err != nil {
			return err
		}
		rates = append(rates, float64(total)/mb/d.Seconds())
	}
	v := stats.Of(rates)
	b.rep.Add(report.Row{Section: "5", Name: name + ", job start and end included", Unit: "MB/s", HigherIsBetter: true, Value: &v})
	return nil
}

// memoryRows adds a row per service for each memory snapshot taken: at
// rest always, after the load and the log run when those scenarios ran.
func (b *bench) memoryRows(context.Context) error {
	names := make([]string, 0, len(b.rest))
	for n := range b.rest {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rest, load, logs := b.rest[n], b.afterLoad[n], b.afterLog[n]
		b.rep.Add(report.Row{Section: "6", Name: "RSS " + n + " at rest", Unit: "MiB", Value: one(float64(rest.RSS) / mib),
			Note: fmt.Sprintf("PSS %.1f MiB, %d threads", float64(rest.PSS)/mib, rest.Threads)})
		if b.afterLoad != nil {
			row := report.Row{Section: "6", Name: "RSS " + n + " after the " + strconv.Itoa(b.sizes.LoadJobs) + " jobs", Unit: "MiB", Value: one(float64(load.RSS) / mib),
				Baseline: "at rest", BaselineValue: one(float64(rest.RSS) / mib), Target: "rest ± 10%",
				Note: fmt.Sprintf("%d threads", load.Threads)}
			if load.RSS > 0 && rest.RSS > 0 {
				r := float64(load.RSS) / float64(rest.RSS)
				row.Met = met(r >= 0.9 && r <= 1.1)
			}
			b.rep.Add(row)
		}
		if b.afterLog != nil {
			b.rep.Add(report.Row{Section: "6", Name: "RSS " + n + " after the first " + humanBytes(b.sizes.LogBytes) + " of output", Unit: "MiB", Value: one(float64(logs.RSS) / mib),
				Target: "< 64 MiB", Met: met(logs.RSS > 0 && logs.RSS < serviceMemoryTarget)})
		}
	}
	return nil
}

// overhead measures the running-job overhead.
func (b *bench) overhead(ctx context.Context) error {
	n, capNote := b.sizes.Sleepers, ""
	if max, err := b.suite.MaxRunningJobs(); err != nil {
		return err
	} else if max > 0 && max < n {
		capNote = fmt.Sprintf("%d jobs asked for, but the suite runs at most %d at once (joblet.maxConcurrentJobs; embedded mode has no knob for it). ", n, max)
		n = max
	}
	o, err := scenarios.RunningOverhead(ctx, b.client, b.suite, n)
	if err != nil {
		return err
	}
	rest := scenarios.Total(b.rest)
	perJob := float64(o.Services.RSS-rest.RSS+o.Helpers.RSS) / float64(o.Jobs) / mib
	perJobPSS := float64(o.Services.PSS-rest.PSS+o.Helpers.PSS) / float64(o.Jobs) / mib
	b.rep.Add(report.Row{Section: "6", Name: fmt.Sprintf("overhead per running job, %d `sleep 60` jobs: (suite RSS growth + job helper RSS) ÷ %d", o.Jobs, o.Jobs),
		Unit: "MiB", Value: one(perJob), Target: "≤ 2 MiB", Met: met(perJob <= 2),
		Note: capNote + fmt.Sprintf("%d helper processes, %.1f MiB RSS (%.1f MiB PSS): %s, %s; suite %.1f → %.1f MiB; by PSS %.2f MiB/job; total (suite + helpers) ÷ %d = %.2f MiB; the commands themselves %.1f MiB",
			o.HelperCount, float64(o.Helpers.RSS)/mib, float64(o.Helpers.PSS)/mib, each("shim", o.ShimCount, o.Shims), each("init", o.InitCount, o.Inits),
			float64(rest.RSS)/mib, float64(o.Services.RSS)/mib,
			perJobPSS, o.Jobs, float64(o.Services.RSS+o.Helpers.RSS)/float64(o.Jobs)/mib, float64(o.Commands.RSS)/mib)})
	return nil
}

// each describes n helper processes of one kind using m in all: their
// average RSS and PSS.
func each(kind string, n int, m suite.Memory) string {
	if n == 0 {
		return "no " + kind
	}
	return fmt.Sprintf("%d %ss, %.2f MiB RSS (PSS %.2f) each", n, kind, float64(m.RSS)/float64(n)/mib, float64(m.PSS)/float64(n)/mib)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// memorySnapshot is every service's memory at one moment.
type memorySnapshot = map[string]suite.Memory
