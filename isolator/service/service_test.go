package service

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
	"github.com/joblet-dev/joblet/isolator/shim/shimproc"
	"github.com/joblet-dev/joblet/isolator/store"
	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/daemon"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// TestMain lets the test binary act as a job's init and its shim, as the
// isolator does.
func TestMain(m *testing.M) {
	if sandbox.IsInit() {
		sandbox.Init()
	}
	if shimproc.IsShim() {
		shimproc.Main()
	}
	os.Exit(m.Run())
}

// shimChildren lists this process's children that are shims or zombies.
func shimChildren(t *testing.T) []sandboxtest.Child {
	t.Helper()
	var out []sandboxtest.Child
	for _, c := range sandboxtest.Children(t) {
		if c.Comm == "joblet-shim" || c.State == "Z" {
			out = append(out, c)
		}
	}
	return out
}

func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the isolator needs root to create namespaces and mounts")
	}
}

// memLogd is an in-memory logd with logd's append semantics.
type memLogd struct {
	mu     sync.Mutex
	logs   map[string]*bytes.Buffer
	closed map[string]bool
	// holdEOF, when set, keeps a Drain whose pipes are at end of file from
	// closing the log until it is closed (end_test.go).
	holdEOF chan struct{}
}

func (l *memLogd) Append(_ context.Context, id string, recs []logdapi.Record, eof bool) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.logs[id]
	if b == nil {
		b = &bytes.Buffer{}
		l.logs[id] = b
	}
	for _, r := range recs {
		size := int64(b.Len())
		if r.Offset > size {
			return size, errdefs.Errorf(errdefs.ErrFailedPrecondition, "gap in the log")
		}
		if skip := size - r.Offset; skip < int64(len(r.Data)) {
			b.Write(r.Data[skip:])
		}
	}
	l.closed[id] = l.closed[id] || eof
	return int64(b.Len()), nil
}

// Drain takes a job's output pipes, as logd does (logdapi.ServePipes): a
// job's shim hands them over and has no other way to deliver the output.
func (l *memLogd) Drain(ctx context.Context, id string, pipes []logdapi.Pipe) (int64, error) {
	var wg sync.WaitGroup
	for _, p := range pipes {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := p.File.Read(buf)
				if n > 0 {
					l.mu.Lock()
					if l.logs[id] == nil {
						l.logs[id] = &bytes.Buffer{}
					}
					l.logs[id].Write(buf[:n])
					l.mu.Unlock()
				}
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	l.mu.Lock()
	hold := l.holdEOF
	l.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return l.Append(ctx, id, nil, true)
}

func (l *memLogd) Read(context.Context, string, int64, bool, func(logdapi.Record) error) error {
	return errdefs.Errorf(errdefs.ErrFailedPrecondition, "not in this fake")
}

func (l *memLogd) Stat(_ context.Context, id string) (logdapi.Stat, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.logs[id]
	if !ok {
		return logdapi.Stat{}, nil
	}
	return logdapi.Stat{Size: int64(b.Len()), Closed: l.closed[id], Exists: true}, nil
}

func (l *memLogd) log(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.logs[id]; b != nil {
		return b.String(), l.closed[id]
	}
	return "", false
}

// suite is a running isolator on a temporary socket, with an in-memory
// logd on its own socket, and a client of the isolator.
type suite struct {
	t      *testing.T
	cfg    config.Config
	logd   *memLogd
	netd   *memNetd
	client isolatorapi.Isolator
	stop   func() error // stops the isolator and returns Run's error
}

func testConfig(t *testing.T) config.Config {
	t.Helper()
	requiresRoot(t)
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Paths.RunDir = filepath.Join(dir, "run")
	cfg.Paths.StateDir = filepath.Join(dir, "state")
	cfg.Joblet.StopGracePeriod = time.Second
	// Nothing a test starts may outlive it (restart_test.go turns it off).
	cfg.Joblet.StopJobsOnExit = true
	if err := transport.PrepareDir(cfg.Paths.RunDir, 0); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startSuite(t *testing.T, cfg config.Config) *suite {
	t.Helper()

	logd := &memLogd{logs: map[string]*bytes.Buffer{}, closed: map[string]bool{}}
	ll, err := transport.Listen(cfg.SocketPath("logd"), 0)
	if err != nil {
		t.Fatal(err)
	}
	ls := grpc.NewServer()
	logdapi.Register(ls, logd)
	go ls.Serve(logdapi.ServePipes(ll, logd, zerolog.Nop()))
	t.Cleanup(ls.Stop)

	netd := serveNetd(t, cfg) // netd_test.go

	il, err := transport.Listen(cfg.SocketPath("isolator"), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	env := daemon.Env{Name: "isolator", Config: cfg, Log: zerolog.New(zerolog.NewTestWriter(t)), Listener: il}
	go func() { ran <- Run(ctx, env) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-ran:
			case <-time.After(20 * time.Second):
				runErr = errors.New("isolator did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})

	cc, err := transport.Dial(cfg.SocketPath("isolator"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &suite{t: t, cfg: cfg, logd: logd, netd: netd, client: isolatorapi.NewClient(cc), stop: stop}
}

func (s *suite) run(cmd string, args ...string) *jobletv1.Job {
	s.t.Helper()
	j, err := s.client.Run(context.Background(), &jobletv1.JobSpec{Command: cmd, Args: args})
	if err != nil {
		s.t.Fatalf("run %s: %v", cmd, err)
	}
	return j
}

// ended polls until job id has ended and its log is closed.
func (s *suite) ended(id string) (*jobletv1.Job, string) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		j, err := s.client.Get(context.Background(), id)
		if err != nil {
			s.t.Fatal(err)
		}
		if out, closed := s.logd.log(id); j.GetState() != jobletv1.JobState_JOB_STATE_RUNNING && closed {
			return j, out
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("job %s did not end", id)
	return nil, ""
}

// record reads job id's record from the isolator's state on disk.
func (s *suite) record(id string) store.Record {
	s.t.Helper()
	recs, err := store.Read(s.cfg.StateDir("isolator"))
	if err != nil {
		s.t.Fatal(err)
	}
	for _, r := range recs {
		if r.Job.GetId() == id {
			return r
		}
	}
	s.t.Fatalf("no record of job %s on disk", id)
	return store.Record{}
}

// initPID reads the host pid of a running job's init from its record on
// disk, to check afterwards that nothing of the job is left.
func (s *suite) initPID(id string) int {
	s.t.Helper()
	rec := s.record(id)
	if rec.Init.PID <= 0 {
		s.t.Fatalf("no init pid in the record of job %s: %+v", id, rec)
	}
	return rec.Init.PID
}

func assertGone(t *testing.T, pid int) {
	t.Helper()
	// The init is its shim's child, and the shim reaps it before it exits
	// (or, without a shim, the isolator's): once reaped it is gone for
	// good.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("job init %d still exists (%v)", pid, err)
	}
}

func assertNoMounts(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), dir) {
		t.Errorf("mounts under %s left on the host", dir)
	}
}

func TestJobsThroughTheSocket(t *testing.T) {
	s := startSuite(t, testConfig(t))
	ctx := context.Background()

	t.Run("echo", func(t *testing.T) {
		j, out := s.ended(s.run("echo", "hi").GetId())
		if j.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED || j.GetExitCode() != 0 || out != "hi\n" {
			t.Fatalf("record %v, output %q", j, out)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		j, _ := s.ended(s.run("sh", "-c", "exit 3").GetId())
		if j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetExitCode() != 3 {
			t.Fatalf("record %v", j)
		}
	})
	t.Run("inside the sandbox", func(t *testing.T) {
		j, out := s.ended(s.run("sh", "-c", `hostname; echo "$JOB_ID $HOME"; pwd; env | wc -l`).GetId())
		want := "job-" + j.GetId() + "\n" + j.GetId() + " /work\n/work\n"
		if !strings.HasPrefix(out, want) || j.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED {
			t.Fatalf("record %v, output %q, want it to start with %q", j, out, want)
		}
	})
	t.Run("not found", func(t *testing.T) {
		// The error crosses the socket with its kind and the job's
		// record, whose exit code is a shell's: 127 not found, 126 not
		// executable.
		for _, tc := range []struct {
			cmd  string
			kind error
			exit int32
		}{
			{"no-such-command-joblet", errdefs.ErrNotFound, 127},
			{"/etc/hostname", errdefs.ErrPermissionDenied, 126},
		} {
			_, err := s.client.Run(ctx, &jobletv1.JobSpec{Command: tc.cmd})
			if !errors.Is(err, tc.kind) {
				t.Fatalf("%s: err %v, want %v", tc.cmd, err, tc.kind)
			}
			jobs, _ := s.client.List(ctx)
			last := jobs[len(jobs)-1]
			if last.GetState() != jobletv1.JobState_JOB_STATE_FAILED || last.GetExitCode() != tc.exit || !strings.Contains(last.GetReason(), tc.cmd) {
				t.Fatalf("%s: record %v", tc.cmd, last)
			}
			if j := errdefs.JobOf(err); j.GetId() != last.GetId() || j.GetExitCode() != tc.exit {
				t.Fatalf("%s: the error carries %v, want the record %v", tc.cmd, j, last)
			}
		}
	})
	t.Run("invalid", func(t *testing.T) {
		if _, err := s.client.Run(ctx, &jobletv1.JobSpec{Command: "echo", Network: strings.Repeat("n", 65)}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("err %v", err)
		}
		if _, err := s.client.Get(ctx, "999"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("get: %v", err)
		}
		if _, err := s.client.Stop(ctx, "999"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("stop: %v", err)
		}
	})
	t.Run("stop ignores TERM", func(t *testing.T) {
		j := s.run("sh", "-c", `trap "" TERM; sleep 1000`)
		pid := s.initPID(j.GetId())
		time.Sleep(200 * time.Millisecond) // let the trap be set
		start := time.Now()
		r, err := s.client.Stop(ctx, j.GetId())
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if r.GetState() != jobletv1.JobState_JOB_STATE_STOPPED || took > s.cfg.Joblet.StopGracePeriod+2*time.Second {
			t.Fatalf("record %v after %v", r, took)
		}
		assertGone(t, pid)
		again, err := s.client.Stop(ctx, j.GetId())
		if err != nil || again.GetState() != jobletv1.JobState_JOB_STATE_STOPPED {
			t.Fatalf("second stop: %v %v", again, err)
		}
	})
	t.Run("list", func(t *testing.T) {
		jobs, err := s.client.List(ctx)
		if err != nil || len(jobs) != 6 {
			t.Fatalf("%d jobs, %v", len(jobs), err)
		}
		for i, j := range jobs {
			if j.GetId() != string(rune('1'+i)) {
				t.Fatalf("job %d has id %s", i, j.GetId())
			}
		}
	})

	// Shutting the isolator down stops what runs and leaves nothing behind.
	j := s.run("sleep", "1000")
	pid := s.initPID(j.GetId())
	// The running job's shim and the one waiting for the next job.
	for deadline := time.Now().Add(10 * time.Second); len(shimChildren(t)) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("shims running: %v, want the job's and a waiting one", shimChildren(t))
		}
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, pid)
	if left := shimChildren(t); len(left) != 0 {
		t.Errorf("shims or zombies left after shutdown: %v", left)
	}
	assertNoMounts(t, s.cfg.Paths.StateDir)
	if rec := s.record(j.GetId()).Job; rec.GetState() != jobletv1.JobState_JOB_STATE_STOPPED || !strings.Contains(rec.GetReason(), jobs.ReasonShutdown) {
		t.Fatalf("record after shutdown: %v", rec)
	}
	// Nothing of the job: roots holds only what every job shares, empty.
	for d, want := range map[string]int{"work": 0, "roots": 2, "roots/mnt": 0, "roots/empty-work": 0} {
		ents, _ := os.ReadDir(filepath.Join(s.cfg.StateDir("isolator"), d))
		if len(ents) != want {
			t.Errorf("%s not cleaned: %v", d, ents)
		}
	}
	if left := s.netd.left(); len(left) != 0 {
		t.Errorf("jobs still attached to a network after shutdown: %v", left)
	}
}

// A job left running by an isolator that died is killed, with everything in
// it, when the next isolator starts, and recorded FAILED.
func TestRecoverAfterCrash(t *testing.T) {
	cfg := testConfig(t)
	state := cfg.StateDir("isolator")
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.NextID()
	if err != nil {
		t.Fatal(err)
	}
	work, root := filepath.Join(state, "work", id), filepath.Join(state, "roots", id)
	for _, d := range []string{work, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	proc, err := sandboxRunner{}.Start(jobs.Spec{
		ID: id, Hostname: "job-" + id, Args: []string{"sh", "-c", "sleep 1000 & sleep 1000"},
		Env: []string{"PATH=/usr/bin:/bin"}, RootDir: root, WorkDir: work, Stdout: outW, Stderr: outW,
	})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan jobs.Result, 1)
	go func() {
		r, _ := proc.Wait()
		waited <- r
	}()
	t.Cleanup(func() {
		proc.Kill()
		<-waited
	})
	init, err := store.Identify(proc.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(store.Record{Job: &jobletv1.Job{Id: id, Command: "sh", State: jobletv1.JobState_JOB_STATE_RUNNING}, Init: init}); err != nil {
		t.Fatal(err)
	}

	s := startSuite(t, cfg)
	select {
	case r := <-waited:
		waited <- r // for the cleanup
		if r.Signal != int(syscall.SIGKILL) {
			t.Fatalf("left-over job ended with %+v, want SIGKILL", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("left-over job not killed")
	}
	j, _ := s.ended(id)
	if j.GetState() != jobletv1.JobState_JOB_STATE_FAILED || j.GetReason() != jobs.ReasonRestarted {
		t.Fatalf("record %v", j)
	}
	for _, d := range []string{work, root} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", d)
		}
	}
	// After a crash the store skips the rest of the id block it had
	// reserved: a later id, never one handed out before.
	prev, _ := strconv.Atoi(id)
	if next := s.run("true"); func() bool { n, err := strconv.Atoi(next.GetId()); return err != nil || n <= prev }() {
		t.Fatalf("next id %s, want a fresh id after %s", next.GetId(), id)
	}
}
