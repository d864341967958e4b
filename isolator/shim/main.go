package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/output"
	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// memoryLimit is the shim's soft Go heap limit: it holds at most the
// forwarder's 4 MiB of unsent output, so a lean heap costs nothing.
const memoryLimit = 16 << 20

// procName is the shim's name in ps and top, NUL-terminated for prctl.
var procName = []byte(arg0 + "\x00")

// IsShim reports whether this process was started by Start as a job's shim.
func IsShim() bool {
	return len(os.Args) == 1 && os.Args[0] == arg0
}

// Main is a job's shim: it runs the job, forwards its output and records
// its result (see the package doc). It never returns.
func Main() {
	// Before any gRPC code runs: the job's output goes out in messages of
	// up to 1 MiB, which gRPC's default pool does not keep, so each would
	// be a fresh, zeroed allocation (and garbage).
	transport.InstallBufferPool()
	debug.SetMemoryLimit(memoryLimit)
	// Started from /proc/self/fd/N, its name would be N: name it for ps.
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&procName[0])), 0, 0, 0)
	// A terminal's or a session's signals are not for the shim: the job is
	// stopped through its cgroup, and the shim ends with it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	sandbox.CloseInheritedExe(fdShimExe)
	if slices.Contains(os.Environ(), initFDEnv) {
		// The isolator's sealed init binary: the job's init runs from it.
		if err := sandbox.InheritInit(os.NewFile(fdInit, "shim-init")); err != nil {
			report(os.NewFile(fdStatus, "shim-status"), errorMessage(fmt.Errorf("shim: %w", err)))
			os.Exit(1)
		}
	}
	// Before the spec is read: the spawner joins the spare cgroup while the
	// shim waits.
	sp := spawnerFromEnv()
	specIn := os.NewFile(fdSpec, "shim-spec")
	statusOut := os.NewFile(fdStatus, "shim-status")
	var spec Spec
	err := json.NewDecoder(specIn).Decode(&spec)
	specIn.Close()
	if err != nil {
		report(statusOut, errorMessage(fmt.Errorf("shim: read spec: %w", err)))
		os.Exit(1)
	}
	os.Exit(run(spec, statusOut, sp))
}

// report writes m to the isolator and closes the pipe: it is the only
// message, and the isolator may be gone by the time the job ends.
func report(w *os.File, m message) {
	_ = json.NewEncoder(w).Encode(m) // a write error means the isolator died; the job goes on
	w.Close()
}

func run(spec Spec, statusOut *os.File, sp *spawner) int {
	timeout := spec.OutputTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	p, fw, cg, err := start(spec, sp)
	if sp != nil {
		// Before anything is reported: once the isolator knows, it may
		// signal, kill or remove the job's cgroup, and no thread of the
		// shim may be in it then.
		if rerr := sp.release(); rerr != nil && err == nil {
			p.Kill()
			_, _ = p.Wait()
			err = rerr
		}
	}
	if err != nil {
		report(statusOut, errorMessage(err))
		if fw != nil {
			// The log exists and is closed, so a follower sees its end.
			awaitOutput(fw, timeout)
		}
		return 1
	}
	report(statusOut, message{Type: msgStarted, PID: p.Pid(), Moved: p.Moved()})

	res := Result{}
	r, werr := p.Wait()
	res.ExitCode, res.Signal = r.ExitCode, r.Signal
	if werr != nil {
		res.Error = werr.Error()
	}
	if cg != nil {
		if u, err := cg.Stats(); err == nil {
			res.Usage = &u
		} // else the isolator reads the cgroup itself, if it still exists
	}
	res.OutputComplete = awaitOutput(fw, timeout) == nil
	res.EndedAt = time.Now().UTC()
	if err := WriteResult(spec.Result, res); err != nil {
		return 2 // the isolator records the job as lost
	}
	return 0
}

// start makes the job's output pipes, starts forwarding them to logd and
// starts the job in its sandbox, in its cgroup (nil: none), from the
// spawner's thread when there is one. On a start error the forwarder (if
// made) still runs, to close the job's log.
func start(spec Spec, sp *spawner) (*sandbox.Process, *output.Forwarder, *cgroup.Job, error) {
	var cg sandbox.Cgroup
	var job *cgroup.Job
	if len(spec.Cgroup) > 0 {
		j, err := cgroup.OpenJob(spec.ID, spec.Cgroup)
		if err != nil {
			return nil, nil, nil, err
		}
		cg, job = j, j
	}
	// Dial does not wait for logd: delivery retries until it is there.
	cc, err := transport.Dial(spec.LogdSocket)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("shim: logd client: %w", err)
	}
	// Connect now, while the job starts, not on the first output: a short
	// job would otherwise end before its log is even opened, and wait for
	// the connection before its result is recorded.
	cc.Connect()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("shim: stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, fmt.Errorf("shim: stderr pipe: %w", err)
	}
	fw := output.Start(logdapi.NewClient(cc), spec.ID, outR, errR, output.Options{Log: zerolog.Nop()})
	var spawn func(func() error) error
	if sp != nil && job != nil {
		spawn = sp.spawn
	}
	p, err := sandbox.Start(sandbox.Spec{
		ID: spec.ID, Hostname: spec.Hostname, Args: spec.Args, Env: spec.Env,
		RootDir: spec.RootDir, WorkDir: spec.WorkDir,
		Stdout: outW, Stderr: errW,
		Cgroup:    cg,
		Spawn:     spawn,
		NetnsPath: spec.NetnsPath, ResolvConf: spec.ResolvConf, Hosts: spec.Hosts,
		Work: spec.Work, Tmp: spec.Tmp,
		UserNS: spec.UserNS,
	})
	// The job holds its own copies; ours must go for the readers to see EOF.
	outW.Close()
	errW.Close()
	if err != nil {
		return nil, fw, nil, err
	}
	return p, fw, job, nil
}

// awaitOutput waits, for at most d, for fw to deliver everything, and
// abandons it otherwise.
func awaitOutput(fw *output.Forwarder, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-fw.Done():
	case <-t.C:
		fw.Abandon()
	}
	return fw.Err()
}
