package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/client"
	"github.com/joblet-dev/joblet/rnx/jobspec"
	"github.com/joblet-dev/joblet/rnx/logstream"
	"github.com/joblet-dev/joblet/rnx/render"
	"github.com/joblet-dev/joblet/rnx/termsafe"
	"github.com/joblet-dev/joblet/rnx/upload"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// exitDetached is rnx's exit code when the user interrupts twice and leaves
// a job that is still stopping (128 + SIGINT, as a shell would report).
const exitDetached = 130

func (a *app) runCommand() *cobra.Command {
	var (
		f      jobspec.Flags
		detach bool
		up     uploadFlags // upload.go
	)
	cmd := &cobra.Command{
		Use:   "run [flags] CMD [ARGS...]",
		Short: "Run a command in a new job",
		Long: `Run a command in a new job. Flags end at CMD: "rnx run ls -la" passes -la to ls.

By default rnx attaches: it prints the job header on stderr, streams the
job's stdout and stderr to its own, and exits with the job's exit code
(128+N when a signal N killed it). With --detach it prints the header on
stdout and returns at once; a scheduled job (--schedule) is always detached.

Interrupting an attached run (Ctrl-C, SIGTERM) asks the server to stop the
job and keeps streaming until it has ended, then exits with its code.
Interrupting a second time leaves at once (exit 130); the job still stops.

Networks (--network):
` + networkModes,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &usageError{fmt.Errorf("run: no command given (usage: %s)", cmd.UseLine())}
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			spec, err := jobspec.Build(f, args[0], args[1:], a.env.Now())
			if err != nil {
				return &usageError{err}
			}
			plan, err := up.plan(a.env.Dir)
			if err != nil {
				return err
			}
			return a.run(cmd.Context(), spec, plan, detach || spec.GetSchedule() != "")
		}),
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.Int32Var(&f.MaxCPU, "max-cpu", 0, "CPU limit in percent of one CPU (150 = one and a half CPUs)")
	fl.Int32Var(&f.MaxMemory, "max-memory", 0, "memory limit in MB")
	fl.Int64Var(&f.MaxIOBPS, "max-iobps", 0, "I/O limit in bytes per second")
	fl.StringVar(&f.CPUCores, "cpu-cores", "", `CPU cores the job may use, e.g. "0-3" or "1,3,5"`)
	fl.Int32Var(&f.MaxPIDs, "max-pids", 0, "maximum number of processes")
	fl.StringVar(&f.Network, "network", "", "network `NAME` to join: \"bridge\" (default; jobs reach each other), \"isolated\" (outbound only), \"none\" (loopback only) or a custom one (see rnx network)")
	fl.StringVar(&f.Name, "name", "", "a name for the job")
	fl.StringVar(&f.Schedule, "schedule", "", `start later: a delay ("30min", "2h30m") or an RFC3339 time`)
	fl.BoolVarP(&detach, "detach", "d", false, "print the job header and return without waiting")
	up.register(fl)
	return cmd
}

func (a *app) run(ctx context.Context, spec *jobletv1.JobSpec, plan *upload.Plan, detach bool) error {
	conn, err := a.connect(runCalls(plan, detach)...)
	if err != nil {
		return err
	}
	defer a.release(conn)

	// Listen before the job exists, so an interrupt that comes while it is
	// being created still stops it.
	var sigs <-chan os.Signal
	if !detach {
		ch, stop := a.env.Signals()
		defer stop()
		sigs = ch
	}
	job, err := a.startJob(ctx, conn, spec, plan) // upload.go
	if err != nil {
		// A job that was made but could not start comes with its record:
		// show it and exit as a shell would (127: command not found).
		if job = errdefs.JobOf(err); !render.Ended(job.GetState()) {
			return conn.Explain(err)
		}
	}
	header := a.env.Stderr
	if detach {
		header = a.env.Stdout
	}
	if err := render.Header(header, job); err != nil {
		return err
	}
	if render.Ended(job.GetState()) { // failed before it could run: nothing to follow
		return a.exitWith(job)
	}
	if detach {
		return nil
	}
	return a.attach(ctx, conn, job.GetId(), sigs)
}

// runCalls are the calls a run makes: it creates the job, and an attached
// run follows its output and asks for its end.
func runCalls(plan *upload.Plan, detach bool) []string {
	create := jobletv1.JobService_RunJob_FullMethodName
	if plan != nil {
		create = jobletv1.JobService_RunJobWithUploads_FullMethodName
	}
	if detach {
		return []string{create}
	}
	return []string{create, jobletv1.JobService_GetJobLogs_FullMethodName, jobletv1.JobService_GetJobStatus_FullMethodName}
}

// attach streams a job's output until it ends and returns its exit code.
func (a *app) attach(ctx context.Context, conn *client.Conn, id string, sigs <-chan os.Signal) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	detached := make(chan struct{})
	go a.stopOnSignal(ctx, conn, id, sigs, func() { close(detached); cancel() })

	out := a.newOutput()
	job, err := a.followToEnd(ctx, conn, id, out, a.askEnd(ctx, conn, id))
	err = errors.Join(err, out.flush())
	select {
	case <-detached:
		fmt.Fprintf(a.env.Stderr, "rnx: left job %s; it is being stopped (see rnx status %s)\n", termsafe.String(id), termsafe.String(id))
		return exitCode(exitDetached)
	default:
	}
	if err != nil {
		return err
	}
	return a.exitWith(job)
}

// exitWith ends rnx with an ended job's exit code, explaining on stderr
// when the code alone would not.
func (a *app) exitWith(job *jobletv1.Job) error {
	code, note := jobExit(job)
	if note != "" {
		fmt.Fprintf(a.env.Stderr, "rnx: %s\n", note)
	}
	if code == 0 {
		return nil
	}
	return exitCode(code)
}

// followToEnd follows the job's output and returns its final record. The
// log stream normally ends when the job does; if it ends earlier (logd
// restarted) and the offsets allow it, rnx follows again from where it was.
func (a *app) followToEnd(ctx context.Context, conn *client.Conn, id string, out *output, end *endAnswer) (*jobletv1.Job, error) {
	// The log closes a few milliseconds before the job's record says it has
	// ended. The question "has it ended?" is already with the server (end);
	// its answer is awaited for up to a second, as a status call would be.
	// Without a usable answer (an error, a server that predates wait_ms and
	// answers at once, a job that outlived the wait) rnx asks as it did
	// before end existed: within a second, and a server that answers at
	// once is asked again after short pauses at first.
	for pause := 5 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		if err := a.follow(ctx, conn, id, true, out); err != nil {
			return nil, err
		}
		if !out.tracker.CanResume() {
			if job, _ := end.wait(ctx, statusWait); job != nil {
				return job, nil
			}
			return a.waitEnded(ctx, conn, id)
		}
		asked := time.Now()
		job, answered := end.wait(ctx, time.Second)
		if job != nil {
			return job, nil
		}
		if answered { // of no use: ask
			job, err := a.status(ctx, conn, id, time.Second)
			if err != nil || render.Ended(job.GetState()) {
				return job, err
			}
		} // else the job has not ended within the second
		if !sleep(ctx, pause-time.Since(asked)) {
			return nil, ctx.Err()
		}
	}
}

// endAnswer is a GetJobStatus call with wait_ms made as soon as rnx
// attaches, while the output is still streaming, so that the question is
// already at the server when the job's final record is saved: the answer
// leaves then, instead of a question leaving once the output has ended
// (one trip through the gateway to the isolator fewer at the end of every
// attached run, and the status call's first-use costs paid while waiting).
// Its answer is used once.
type endAnswer struct {
	ch    chan *jobletv1.Job // the answer; nil after an error
	spent bool
}

// askEnd sends the question; the call ends with ctx at the latest.
func (a *app) askEnd(ctx context.Context, conn *client.Conn, id string) *endAnswer {
	e := &endAnswer{ch: make(chan *jobletv1.Job, 1)}
	go func() {
		// Bounded here too, so that an answer always comes: a server that
		// held the call would otherwise leave followToEnd waiting on it.
		ctx, cancel := context.WithTimeout(ctx, statusWait+5*time.Second)
		defer cancel()
		// Not retried and its errors not shown: a failed call only means
		// rnx asks again once the output has ended, with retries then.
		resp, err := conn.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: id, WaitMs: uint32(statusWait.Milliseconds())})
		if err != nil {
			e.ch <- nil
			return
		}
		e.ch <- resp.GetJob()
	}()
	return e
}

// wait waits up to d for the answer. It returns the job's record when the
// answer came and says the job has ended; answered reports whether an
// answer came (or was used before), useful or not. Without one (d passed,
// ctx ended) the answer may still come at a later wait.
func (e *endAnswer) wait(ctx context.Context, d time.Duration) (job *jobletv1.Job, answered bool) {
	if e.spent {
		return nil, true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case job := <-e.ch:
		e.spent = true
		if render.Ended(job.GetState()) {
			return job, true
		}
		return nil, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

// stopOnSignal asks the server to stop the job at the first interrupt and
// calls leave at the second.
func (a *app) stopOnSignal(ctx context.Context, conn *client.Conn, id string, sigs <-chan os.Signal, leave func()) {
	safeID := termsafe.String(id)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if n > 0 {
				leave()
				return
			}
			fmt.Fprintf(a.env.Stderr, "rnx: %v: stopping job %s and waiting for it to end (interrupt again to leave)\n", sig, safeID)
			// StopJob may take the server's grace period; keep listening.
			go func() {
				if _, err := conn.StopJob(ctx, &jobletv1.StopJobRequest{Id: id}); err != nil && ctx.Err() == nil {
					fmt.Fprintf(a.env.Stderr, "rnx: stop job %s: %s\n", safeID, termsafe.String(conn.Explain(err).Error()))
				}
			}()
		}
	}
}

// statusWait is how long one status call waiting for a job's end may last
// (the server caps it too): long enough that a job's end is seen at once,
// short enough that no call lives as long as a job.
const statusWait = 30 * time.Second

// reconnectWindow is how long rnx keeps trying to reach the gateway again
// when a call fails as unavailable, as while the gateway or a helper
// restarts.
const reconnectWindow = time.Minute

// firstContactWindow is how long rnx retries a gateway it has not reached
// yet in this run (see retryUnavailable).
const firstContactWindow = 3 * time.Second

// follow copies a job's output to out until the stream ends, reconnecting
// (without repeating output) if the connection is lost.
func (a *app) follow(ctx context.Context, conn *client.Conn, id string, follow bool, out *output) error {
	return a.retryUnavailable(ctx, conn, func() error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := conn.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id, Follow: follow})
		if err != nil {
			return err
		}
		err = logstream.Copy(out.tracker.Wrap(stream), out.stdout, out.stderr)
		if err != nil && status.Code(err) == codes.Unavailable && !out.tracker.CanResume() {
			return conn.Explain(err) // a plain error: not retried
		}
		return err
	})
}

// status returns the job's record; with wait > 0, once the job has ended
// or when wait (capped by the server) has passed.
func (a *app) status(ctx context.Context, conn *client.Conn, id string, wait time.Duration) (*jobletv1.Job, error) {
	var job *jobletv1.Job
	err := a.retryUnavailable(ctx, conn, func() error {
		resp, err := conn.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: id, WaitMs: uint32(wait.Milliseconds())})
		job = resp.GetJob()
		return err
	})
	return job, err
}

// waitEnded returns the job's record once it has ended. Each status call
// asks the server to answer only at the end (wait_ms), so the record comes
// the moment it is final; a server that answers at once (one that predates
// wait_ms) is asked again after a pause, short at first, as the record
// usually ends a few milliseconds after the output.
func (a *app) waitEnded(ctx context.Context, conn *client.Conn, id string) (*jobletv1.Job, error) {
	for delay := 5 * time.Millisecond; ; delay = min(delay+5*time.Millisecond, 250*time.Millisecond) {
		asked := time.Now()
		job, err := a.status(ctx, conn, id, statusWait)
		if err != nil || render.Ended(job.GetState()) {
			return job, err
		}
		if !sleep(ctx, delay-time.Since(asked)) {
			return nil, ctx.Err()
		}
	}
}

// The wait between two tries of a call that failed as unavailable: short
// at first (a helper's restart takes a fraction of a second), doubling up
// to the maximum, so that a long outage is not met with a flood of calls.
const (
	minRetryWait = 100 * time.Millisecond
	maxRetryWait = 2 * time.Second
)

// retryUnavailable calls fn until it succeeds, fails otherwise than
// "unavailable", or its window has passed; the error it returns is
// explained for the user. A connection that once worked is retried for
// reconnectWindow; one that never did only for firstContactWindow, which
// covers a gateway restarting (well under a second) while a suite that is
// not running still gets a prompt answer. A gateway that refuses our
// certificate is never retried. fn must be idempotent (a read, or a follow
// that resumes where it was).
func (a *app) retryUnavailable(ctx context.Context, conn *client.Conn, fn func() error) error {
	var lost time.Time
	window := reconnectWindow
	wait := minRetryWait
	for {
		err := fn()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case status.Code(err) != codes.Unavailable || conn.Refused():
			return conn.Explain(err)
		case lost.IsZero():
			lost = time.Now()
			if !conn.WasConnected() {
				window = firstContactWindow
			}
			fmt.Fprintf(a.env.Stderr, "rnx: %s; retrying for up to %s\n", termsafe.String(conn.Explain(err).Error()), window)
		case time.Since(lost) > window:
			return conn.Explain(err)
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// sleep waits for d and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// output is where a job's output goes, kept across reconnects: our stdout
// and stderr, made terminal-safe when they are terminals so a job cannot
// send escape sequences to the user's terminal. Pipes and files get the
// bytes as they are.
type output struct {
	stdout, stderr io.Writer
	tracker        logstream.Tracker
}

func (a *app) newOutput() *output {
	wrap := func(w io.Writer) io.Writer {
		if a.env.IsTerminal != nil && a.env.IsTerminal(w) {
			return termsafe.NewWriter(w)
		}
		return w
	}
	return &output{stdout: wrap(a.env.Stdout), stderr: wrap(a.env.Stderr)}
}

// flush writes what the terminal-safe writers hold back.
func (o *output) flush() error {
	var errs []error
	for _, w := range []io.Writer{o.stdout, o.stderr} {
		if f, ok := w.(interface{ Flush() error }); ok {
			errs = append(errs, f.Flush())
		}
	}
	return errors.Join(errs...)
}
