// Package app is the benchmark's main: it re-runs itself in a private
// network and mount namespace, starts a suite there, runs every scenario in
// order, prints one table and writes it under the results dir.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/joblet-dev/joblet/bench/internal/nsexec"
	"github.com/joblet-dev/joblet/bench/internal/profile"
	"github.com/joblet-dev/joblet/bench/internal/report"
	"github.com/joblet-dev/joblet/bench/internal/suite"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Sizes are how much of each scenario to run.
type Sizes struct {
	Starts      int   // sequential starts per start-latency figure
	RNXRuns     int   // `rnx run true` processes
	LoadJobs    int   // jobs through the API at once ...
	LoadWidth   int   // ... with this concurrency
	LogBytes    int64 // output of the log jobs
	LogRuns     int   // attached runs (and pipe drains) of LogBytes
	Followers   int   // followers of one job
	UploadBytes int   // upload tree size
	Sleepers    int   // running jobs for the per-job overhead
}

// Full is what `make bench` runs.
var Full = Sizes{Starts: 100, RNXRuns: 50, LoadJobs: 1000, LoadWidth: 32, LogBytes: 1 << 30, LogRuns: 2, Followers: 16, UploadBytes: 100 << 20, Sleepers: 200}

// Quick is a smoke run of every scenario.
var Quick = Sizes{Starts: 10, RNXRuns: 5, LoadJobs: 64, LoadWidth: 32, LogBytes: 64 << 20, LogRuns: 1, Followers: 4, UploadBytes: 8 << 20, Sleepers: 20}

type options struct {
	binDir  string
	outDir  string
	perfDir string
	quick   bool
	only    string // comma-separated step names; empty runs them all
}

// Main runs the benchmark with command-line args and returns the exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet("joblet-bench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.binDir, "bin", "bin", "directory with the suite's binaries (make build)")
	fs.StringVar(&o.outDir, "out", "", "write latest.md and latest.json here (bench/results)")
	fs.StringVar(&o.perfDir, "perf", "", "record perf CPU profiles of the services per scenario into this directory (skews the figures)")
	fs.BoolVar(&o.quick, "quick", false, "run every scenario small (a smoke test, not a measurement)")
	fs.StringVar(&o.only, "only", "", "run only these scenarios, comma-separated: "+strings.Join(stepNames, ",")+" (rest memory and the memory rows always run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !nsexec.Inside() {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "joblet-bench: must run as root (it starts the suite)")
			return 1
		}
		code, err := nsexec.Reexec(args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "joblet-bench: %v\n", err)
			return 1
		}
		return code
	}
	only, err := parseOnly(o.only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "joblet-bench: %v\n", err)
		return 2
	}
	if err := run(o, only); err != nil {
		fmt.Fprintf(os.Stderr, "joblet-bench: %v\n", err)
		return 1
	}
	return 0
}

// stepNames are the scenarios -only can pick, in the order they run.
var stepNames = []string{"start", "rnx", "load", "logs", "upload", "overhead"}

// parseOnly turns -only into the set of steps to run; nil means every step.
func parseOnly(list string) (map[string]bool, error) {
	if list == "" {
		return nil, nil
	}
	only := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if !slices.Contains(stepNames, n) {
			return nil, fmt.Errorf("-only: unknown scenario %q (known: %s)", n, strings.Join(stepNames, ","))
		}
		only[n] = true
	}
	return only, nil
}

func run(o options, only map[string]bool) error {
	if err := nsexec.Prepare(); err != nil {
		return err
	}
	binDir, err := filepath.Abs(o.binDir)
	if err != nil {
		return err
	}
	for _, p := range []*string{&o.outDir, &o.perfDir} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	sizes := Full
	if o.quick {
		sizes = Quick
	}
	rep := &report.Report{Started: time.Now()}
	loadBefore := loadAvg()
	logf("starting the suite from %s", binDir)
	s, err := suite.Start(binDir)
	if err != nil {
		return err
	}
	b := &bench{sizes: sizes, suite: s, rep: rep, prof: profile.Recorder{Dir: o.perfDir}, only: only}
	runErr := b.all()
	logf("stopping the suite")
	problems := s.Stop(b.cgroupParents)
	rep.Duration = time.Since(rep.Started)
	rep.Machine = machine(loadBefore, loadAvg())
	if o.perfDir != "" {
		rep.Notes = append(rep.Notes, "perf record was sampling the services during this run: the figures are skewed")
	}
	if o.quick {
		rep.Notes = append(rep.Notes, "quick run: small sizes, a smoke test only")
	}
	if only != nil {
		rep.Notes = append(rep.Notes, "only some scenarios were run (-only "+o.only+")")
	}
	for _, p := range problems {
		rep.Notes = append(rep.Notes, "SHUTDOWN: "+p)
	}
	slices.SortStableFunc(rep.Rows, func(a, b report.Row) int { return strings.Compare(a.Section, b.Section) })
	fmt.Println()
	if err := rep.Text(os.Stdout); err != nil {
		return err
	}
	if o.outDir != "" {
		if err := rep.WriteFiles(o.outDir); err != nil {
			return err
		}
		logf("wrote %s/latest.md and latest.json", o.outDir)
	}
	if runErr != nil {
		return fmt.Errorf("%w (suite log: %s)", runErr, s.Log)
	}
	if len(problems) > 0 {
		return fmt.Errorf("the suite left things behind at shutdown (see the notes)")
	}
	return nil
}

// bench is one run's state.
type bench struct {
	sizes         Sizes
	suite         *suite.Suite
	rep           *report.Report
	prof          profile.Recorder
	client        jobletv1.JobServiceClient
	cgroupParents []string
	only          map[string]bool // nil: every step

	rest, afterLoad, afterLog memorySnapshot
}

// all runs the scenarios in an order where each memory figure follows what
// it is about; a scenario that fails ends the run.
func (b *bench) all() error {
	cc, err := b.suite.Dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	b.client = jobletv1.NewJobServiceClient(cc)
	ctx := context.Background()
	steps := []struct {
		key  string // the name -only knows it by; "" always runs
		name string
		f    func(context.Context) error
	}{
		{"", "rest memory", b.restMemory},
		{"start", "start latency", b.startLatency},
		{"rnx", "rnx run", b.rnxRun},
		{"load", "1000 jobs", b.load},
		{"logs", "log throughput", b.logs},
		{"upload", "upload", b.upload},
		{"", "memory", b.memoryRows},
		{"overhead", "running-job overhead", b.overhead},
	}
	for _, st := range steps {
		if st.key != "" && b.only != nil && !b.only[st.key] {
			continue
		}
		logf("%s", st.name)
		t0 := time.Now()
		if err := st.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		logf("%s: %s", st.name, time.Since(t0).Round(100*time.Millisecond))
	}
	return nil
}

// profiled runs f while perf samples the services (when asked to).
func (b *bench) profiled(name string, f func() error) error {
	pids, err := b.suite.Pids()
	if err != nil {
		return err
	}
	stop, err := b.prof.Start(name, pids)
	if err != nil {
		return err
	}
	return errors.Join(f(), stop())
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "joblet-bench: "+format+"\n", args...)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machine describes the machine in one line: kernel, CPUs, memory, load.
func machine(loadBefore, loadAfter string) string {
	kernel, _ := exec.Command("uname", "-r").Output()
	mem := "?"
	if f, err := os.Open("/proc/meminfo"); err == nil {
		b, _ := io.ReadAll(io.LimitReader(f, 256))
		f.Close()
		if fields := strings.Fields(string(b)); len(fields) >= 2 && fields[0] == "MemTotal:" {
			var kb int64
			fmt.Sscan(fields[1], &kb)
			mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	cpus := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = strings.Count(string(b), "\nprocessor") + 1
	}
	return fmt.Sprintf("Linux %s, %d CPUs, %s RAM, load average %s before and %s after",
		strings.TrimSpace(string(kernel)), cpus, mem, loadBefore, loadAfter)
}
