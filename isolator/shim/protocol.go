// Package shim keeps a job running, its output flowing to logd and its exit
// status recorded while the isolator is down or restarting: each job runs
// under a small supervisor process of its own, its shim (after
// containerd's).
//
// The shim is the isolator's binary re-executed (from the sealed in-memory
// copy jobs' inits run from) in shim mode: IsShim is true and the daemon's
// main calls Main first. It runs in the host's namespaces, in a session of
// its own, with no parent-death signal, outside the job's cgroup. The
// isolator and its shim talk over two pipes, then through one file:
//
//	isolator (Start)                           shim (Main)
//	────────────────                           ───────────
//	fork+exec the sealed copy ───────────────▶ read the Spec (JSON) on fd 3
//	                                           dial logd, make the output
//	                                           pipes, start forwarding them,
//	                                           sandbox.Start (cgroup gate,
//	                                           netns, init = PID 1 of the job)
//	read fd 4 ◀──────────────────────────────  {"type":"started","pid":N}
//	  record shim + init identity                or {"type":"error",...}; close
//	  watch the shim's pidfd                   wait for the job, then for its
//	                                           output to reach logd (eof)
//	                                           write the Result to
//	                                           <shims>/<id>.json (temp, fsync,
//	                                           rename, fsync dir), exit 0
//	pidfd readable: read the Result,
//	  record the job's end, Release
//
// A shim may be started ahead of its job (Prestart; Pool keeps some
// waiting; on cgroup v1 with one thread in a spare cgroup that becomes its
// job's, see spawner.go): it then waits at its first step, and exits at once, having done
// nothing, if the spec pipe closes without a Spec. The isolator reaps its
// shims from the goroutine that watches their pidfd, so no OS thread waits
// for any of them.
//
// A new isolator finds a running job's shim again by its pid and start
// time (Adopt): alive, it is watched again; gone, its Result file tells how
// the job ended; neither, the job is lost.
package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/proto/atomicfile"
	"github.com/joblet-dev/joblet/proto/errdefs"
)

// arg0 is argv[0] of a shim; IsShim looks for it.
const arg0 = "joblet-shim"

// Descriptor numbers in the shim, after stdin, stdout and stderr.
const (
	fdSpec   = 3 // read end: the Spec as JSON
	fdStatus = 4 // write end: one message to the isolator
	// fdShimExe is the shim's inherited copy of its own executable
	// (sandbox.WithExe), closed first thing.
	fdShimExe = 5
	// fdInit, when the environment holds initFDEnv, is the sealed init
	// binary (sandbox.InitFile) that the job's init runs from.
	fdInit = 6
)

// initFDEnv in the shim's environment says fdInit is passed.
const initFDEnv = "JOBLET_SHIM_INIT_FD=6"

// Spec is what a shim needs to start and follow one job.
type Spec struct {
	ID       string   `json:"id"`
	Hostname string   `json:"hostname"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	RootDir  string   `json:"root_dir"`
	WorkDir  string   `json:"work_dir"`
	// Cgroup is the job's cgroup directories by controller (cgroup.Job
	// Paths; the one key "" on v2); empty: no cgroup.
	Cgroup     map[string]string `json:"cgroup,omitempty"`
	NetnsPath  string            `json:"netns_path,omitempty"`
	ResolvConf string            `json:"resolv_conf,omitempty"`
	Hosts      string            `json:"hosts,omitempty"`
	// Work and Tmp cap what the job may write to /work and /tmp.
	Work sandbox.Storage `json:"work"`
	Tmp  sandbox.Storage `json:"tmp"`
	// UserNS is the job's user namespace; nil: none.
	UserNS *sandbox.UserNS `json:"user_ns,omitempty"`
	// LogdSocket is where the job's output goes; Result where the shim
	// writes how the job ended.
	LogdSocket string `json:"logd_socket"`
	Result     string `json:"result"`
	// OutputTimeout bounds how long an ended job waits for logd to take
	// the rest of its output (30 s when zero).
	OutputTimeout time.Duration `json:"output_timeout,omitempty"`
	// Placer, when set, makes the job's cgroup once the shim exists, with
	// the shim's pid, before the shim reads this Spec; what it returns
	// becomes Cgroup. Not sent to the shim.
	Placer Placer `json:"-"`
}

// Placer is a job's cgroup that is made for a running shim (cgroup.Job):
// with the systemd driver the shim is the first process of the job's
// scope, which cannot exist before it.
type Placer interface {
	Place(shimPID int) (map[string]string, error)
}

// Message types on the status pipe.
const (
	msgStarted = "started"
	msgError   = "error"
)

// message is the one JSON object a shim writes on the status pipe.
type message struct {
	Type string `json:"type"`
	PID  int    `json:"pid,omitempty"` // started: the host pid of the job's init
	// Moved (started) says the init was moved into the job's cgroup at its
	// start gate, not born there (see Spare).
	Moved bool `json:"moved,omitempty"`
	// error: the start error's kind as a gRPC code, and its text.
	Code codes.Code `json:"code,omitempty"`
	Msg  string     `json:"msg,omitempty"`
}

// errorMessage encodes a start error so that its errdefs kind survives.
func errorMessage(err error) message {
	code := codes.Internal
	if st, ok := status.FromError(errdefs.ToGRPC(err)); ok {
		code = st.Code()
	}
	return message{Type: msgError, Code: code, Msg: err.Error()}
}

// decodeError turns an error message back into an error of its kind; one
// of no kind stays internal (its text, with paths, is for the log only).
func decodeError(m message) error {
	if m.Code == codes.Internal || m.Code == codes.OK {
		return errors.New(m.Msg)
	}
	return errdefs.FromGRPC(status.Error(m.Code, m.Msg))
}

// Result is how a job ended, as its shim records it.
type Result struct {
	ExitCode int       `json:"exit_code"` // 128+Signal when killed by a signal
	Signal   int       `json:"signal"`
	EndedAt  time.Time `json:"ended_at"`
	// OutputComplete is false when logd did not take all of the output in
	// time.
	OutputComplete bool `json:"output_complete"`
	// Error is set when the shim lost track of the job's process (its
	// exit status is then unknown).
	Error string `json:"error,omitempty"`
	// Usage is what the job used, read from its cgroup once the job's init
	// ended; nil when it could not be read. The shim reads it because the
	// cgroup may not outlive the shim: with the systemd driver, systemd
	// removes the job's scope as soon as the shim, its last process, exits.
	Usage *cgroup.Usage `json:"usage,omitempty"`
}

// WriteResult replaces path with r: temporary file, fsync, rename, fsync of
// the directory, so a reader sees the whole result or none.
func WriteResult(path string, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// ReadResult reads the result at path; a missing one is os.ErrNotExist.
func ReadResult(path string) (Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Result{}, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return Result{}, fmt.Errorf("decode %s: %w", path, err)
	}
	return r, nil
}
