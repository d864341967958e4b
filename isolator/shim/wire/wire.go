// Package wire is what the isolator and a job's shim exchange: the shim's
// argv[0], descriptors and environment, the Spec it reads, the messages it
// answers with, and the Result file it leaves (see package shim for the
// exchange). Both sides import it; it links nothing but the sandbox's
// types, since the shim (package shimproc, binary joblet-shim) runs once
// per running job and every package it links is resident memory per job.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/proto/errdefs/kind"
)

// Arg0 is argv[0] of a shim.
const Arg0 = "joblet-shim"

// Descriptor numbers in the shim, after stdin, stdout and stderr.
const (
	FDSpec   = 3 // read end: the Spec as JSON
	FDStatus = 4 // write end: the Messages to the isolator
	// FDShimExe is the shim's inherited copy of its own executable
	// (sandbox.WithExe), closed first thing.
	FDShimExe = 5
	// FDInit, when the environment holds InitFDEnv, is the sealed init
	// binary (sandbox.InitFile) that the job's init runs from.
	FDInit = 6
	// FDReaper, when the environment holds ReaperFDEnv (only with
	// InitFDEnv), is the sealed reaper binary (sandbox.ReaperFile) that
	// the job's init hands over to.
	FDReaper = 7
)

// InitFDEnv in the shim's environment says FDInit is passed.
const InitFDEnv = "JOBLET_SHIM_INIT_FD=6"

// ReaperFDEnv in the shim's environment says FDReaper is passed.
const ReaperFDEnv = "JOBLET_SHIM_REAPER_FD=7"

// SpareEnv, in a shim's environment, holds the directories of its spare
// cgroup as JSON (see shim.Spare).
const SpareEnv = "JOBLET_SHIM_SPARE"

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
	// MsgWaiting comes first from a shim given a spare cgroup, once its
	// spawner thread is in the spare and its job's init is preforked there
	// (PID; 0 when it could not be), before the Spec is read.
	MsgWaiting = "waiting"
	MsgStarted = "started"
	MsgError   = "error"
	// MsgExited comes after "started" once the job's init has reported
	// the command's exit and is exiting, every other process of the job
	// reaped: the isolator may release what the job held (its network, its
	// workspace) while the shim waits for logd to make the log complete.
	MsgExited = "exited"
	// MsgEnded comes last, with the Result, once the log is complete or
	// its delivery given up: the job's end is known. The shim writes the
	// same Result to its file after sending it (the file is for an
	// isolator that is not there to read the pipe), then closes the pipe.
	MsgEnded = "ended"
)

// Message is a JSON object a shim writes on the status pipe: "waiting"
// (with a spare only), then one "started" or "error"; after "started",
// "exited" and then "ended" as the job ends.
type Message struct {
	Type string `json:"type"`
	PID  int    `json:"pid,omitempty"` // started, waiting: the host pid of the job's init
	// Moved (started) says the init was moved into the job's cgroup at its
	// start gate, not born there (see shim.Spare).
	Moved bool `json:"moved,omitempty"`
	// error: the start error's kind (its text, as package kind names it;
	// empty: internal), and the error's text.
	Kind string `json:"kind,omitempty"`
	Msg  string `json:"msg,omitempty"`
	// Result (ended) is how the job ended, as in the result file.
	Result *Result `json:"result,omitempty"`
}

// kinds are the error kinds that survive the status pipe.
var kinds = []error{
	kind.ErrNotFound, kind.ErrInvalidArgument, kind.ErrPermissionDenied, kind.ErrAlreadyExists,
	kind.ErrFailedPrecondition, kind.ErrResourceExhausted, kind.ErrUnavailable, kind.ErrUnauthenticated,
}

// ErrorMessage encodes a start error so that its kind survives.
func ErrorMessage(err error) Message {
	m := Message{Type: MsgError, Msg: err.Error()}
	for _, k := range kinds {
		if errors.Is(err, k) {
			m.Kind = k.Error()
			break
		}
	}
	return m
}

// DecodeError turns an error message back into an error of its kind; one
// of no kind stays internal (its text, with paths, is for the log only).
func DecodeError(m Message) error {
	for _, k := range kinds {
		if m.Kind == k.Error() {
			return kind.Errorf(k, "%s", m.Msg)
		}
	}
	return errors.New(m.Msg)
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
	Usage *Usage `json:"usage,omitempty"`
}

// Usage is what a job used, from the kernel's counters in its cgroup (the
// fields and JSON of cgroup.Usage, which the isolator reads the same way).
type Usage struct {
	CPUTime         time.Duration `json:"cpu_time"`          // user + system CPU time
	MemoryPeakBytes uint64        `json:"memory_peak_bytes"` // v2 memory.peak (5.19+), v1 memory.max_usage_in_bytes
	OOMKills        uint64        `json:"oom_kills"`         // processes the kernel OOM killer killed in the job
}

// WriteResult replaces path with r: a temporary file in the same
// directory, renamed over path, so a reader sees the whole result or none.
//
// Neither the file nor the directory is fsynced: the result only carries
// the job's end to an isolator that was not there when the job ended (one
// that is reads it on the status pipe, MsgEnded), which records that end
// in its own record, durably (and then removes the file). A machine
// crash before that record loses the job's end either way: the job's
// record is still RUNNING and the next start ends it as lost, since its
// shim is gone with the machine (a result that survived would be used, one
// torn or missing is not). The two fsyncs cost 1-3 ms on every job's end.
func WriteResult(path string, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
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
