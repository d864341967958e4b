package sandbox

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/joblet-dev/joblet/proto/errdefs/kind"
)

// The parent (Start, in the isolator) and the job's init talk over a socket
// (the spec, from the parent) and a pipe (messages, from the init), handed
// to the init as extra files. The Spec never travels in argv or the
// environment, which other processes could read.
//
//	parent (Start / Wait)                      init (PID 1 of the job)
//	─────────────────────                      ───────────────────────
//	[v2: UseCgroupFD → CLONE_INTO_CGROUP;
//	 v1 with Spec.Spawn: clone on a thread already in the job's cgroup]
//	clone(NEWPID|NEWNS|NEWUTS|NEWIPC|NEWNET)
//	  [or, with NetnsPath, without NEWNET
//	   from a thread inside that netns]
//	  exec sealed copy of self ──────────────▶ IsInit() → Init()
//	                                           non-dumpable;
//	                                           the common root (rootfs.go):
//	                                             tmpfs on its "/", system
//	                                             binds, /proc, /dev; lo up
//	                                             in a fresh netns
//	                                           GATE: block reading the spec
//	                                             socket; nothing of the job
//	                                             runs yet
//	[Prefork returns here, ahead of the job
//	 (a waiting shim); (*Forked).Start goes on
//	 with the job's Spec, Close closes the
//	 socket unwritten ────────────────────────▶ EOF: exit 1, reaped]
//	[Spawn: Holds(pid) in every hierarchy? then no Apply]
//	[v1: Apply(pid): move init into the job's
//	  cgroup in every hierarchy it joins; on failure
//	  close the socket unwritten ────────────▶ EOF: exit 1 — and kill it]
//	gate byte [+ netd's netns fd, a preforked
//	  init with NetnsPath], spec JSON, close ─▶ read to EOF (= go);
//	                                           [setns(netns) on its locked
//	                                             thread]
//	                                           the job's part of the root
//	                                           (/etc, /work, /tmp, /dev/shm),
//	                                           pivot_root, hostname, [lo up],
//	                                           mark fds > 2 close-on-exec,
//	                                           start the command (a raw fork
//	                                           into its user namespace:
//	                                           stage.go)
//	read syncPipe ◀──────────────────────────  {"type":"started"}
//	  Start returns                              or {"type":"error",...}, exit 1
//	                                           reap children, forward signals
//	                                           the command ends: kill(-1,
//	                                             SIGKILL), reap until none left
//	Wait: read syncPipe ◀─────────────────────  {"type":"exit",...}, then exit 0
//	      read syncPipe to EOF ◀──────────────  the last thread's exit_files:
//	      (the init can run nothing more)        every thread is exiting
//	      Wait returns; wait4(init) in the     the kernel tears down its
//	      background                             namespaces and mounts
//
// The spec is written only once the init is in the job's cgroup (Spec.Cgroup),
// so every process the job ever has, and the init's own work for it, is
// limited and accounted: on cgroup v2 the init is born inside it, on v1 it
// is moved in while it waits at the gate, before it can fork.
//
// Everything the init does before the gate is the same for every job (its
// signal handlers, umask, locked thread, non-dumpable, the common part of
// the root, its fresh network namespace's lo up), so an init can be
// cloned ahead of its job (Prefork: a waiting shim does it) and still do
// nothing for the job before it is in the job's cgroup. What differs by job
// at the clone is only the network namespace: a preforked init has a fresh
// one, so a job on a netd network gets an init cloned for it instead.
//
// If the init dies without a message (Kill, or a crash), the parent sees EOF
// on syncPipe and falls back to the init's own wait status.

// The gate's first byte on the spec socket (fdSpec), before the spec's
// JSON: gateNetns comes with one descriptor (SCM_RIGHTS), netd's network
// namespace, which a preforked init joins on its locked thread before it
// does anything for the job (it could not open the namespace's path: netd
// bound it after the init's mount namespace was copied). The init's other
// threads stay in the fresh namespace it was cloned with: loopback only,
// the job's alone, and out of the job's reach (the init is non-dumpable).
const (
	gateGo    = 0
	gateNetns = 1
)

// Descriptor numbers in the init, in the order of exec.Cmd.ExtraFiles.
const (
	fdSpec   = 3 // the init's end of the spec socket: the gate's byte, then the spec as JSON
	fdSync   = 4 // write end: messages to the parent
	fdStdout = 5 // the command's stdout
	fdStderr = 6 // the command's stderr
	// fdInitExe is the init's inherited copy of its own executable
	// (WithExe), closed first thing: nothing of the job may inherit it.
	fdInitExe = 7
)

// initSpec is the part of Spec that travels to the init as JSON.
type initSpec struct {
	ID       string   `json:"id"`
	Hostname string   `json:"hostname"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	RootDir  string   `json:"root_dir"`
	WorkDir  string   `json:"work_dir"`
	// Network is set when netd gave the job its network; its
	// /etc/resolv.conf and /etc/hosts are then ResolvConf and Hosts.
	Network    bool   `json:"network,omitempty"`
	ResolvConf string `json:"resolv_conf,omitempty"`
	Hosts      string `json:"hosts,omitempty"`
	// FreshNetns is set when the init is in a network namespace of its own
	// (not netd's), whose loopback it brings up (before its gate already
	// when its parent said so at the clone: freshNetnsEnv).
	FreshNetns bool `json:"fresh_netns,omitempty"`
	// JoinNetns is set when the gate's first byte brought netd's network
	// namespace (a preforked init): the init joins it first.
	JoinNetns bool `json:"join_netns,omitempty"`
	// Work caps /work when its MaxBytes is set; Tmp caps /tmp.
	Work Storage `json:"work"`
	Tmp  Storage `json:"tmp"`
	// UserNS, when set, is the command's user namespace (userns.go).
	UserNS *UserNS `json:"user_ns,omitempty"`
}

// Message types on syncPipe.
const (
	msgStarted = "started"
	msgError   = "error"
	msgExit    = "exit"
)

// Error classes in an error message: what the parent turns them into.
const (
	classSetup    = "setup"     // the sandbox could not be built: internal
	classNotFound = "not-found" // Args[0] is not in the new root
	classExec     = "exec"      // Args[0] exists but cannot be executed
)

// message is one JSON object on syncPipe.
type message struct {
	Type string `json:"type"`

	// error
	Class string `json:"class,omitempty"`
	Step  string `json:"step,omitempty"`
	Msg   string `json:"msg,omitempty"`
	Errno int    `json:"errno,omitempty"`

	// exit
	ExitCode int `json:"exit_code,omitempty"`
	Signal   int `json:"signal,omitempty"`
}

// stepError is an init failure with the step that failed.
type stepError struct {
	class string
	step  string
	err   error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func setupErr(step string, err error) error {
	return &stepError{class: classSetup, step: step, err: err}
}

// errorMessage encodes an init failure for the parent.
func errorMessage(err error) message {
	m := message{Type: msgError, Class: classSetup, Msg: err.Error()}
	var se *stepError
	if errors.As(err, &se) {
		m.Class, m.Step, m.Msg = se.class, se.step, se.err.Error()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		m.Errno = int(errno)
	}
	return m
}

// InitError is a failure to build a job's sandbox, reported by its init.
// It unwraps to the syscall.Errno of the failing call when there was one.
type InitError struct {
	ID    string // job id
	Step  string // what the init was doing, e.g. "mount proc on /proc"
	Msg   string // the init's error text
	Errno syscall.Errno
}

func (e *InitError) Error() string {
	return fmt.Sprintf("sandbox for job %s: %s: %s", e.ID, e.Step, e.Msg)
}

// Unwrap returns the errno of the failing call, if any.
func (e *InitError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// decodeError turns an error message from the init into the caller's error.
func decodeError(spec *Spec, m message) error {
	switch m.Class {
	case classNotFound: // a shell's 127
		return kind.Errorf(kind.ErrNotFound, "command not found: %s", spec.Args[0])
	case classExec: // a shell's 126: there, but not executable
		return kind.Errorf(kind.ErrPermissionDenied, "cannot execute %s: %s", spec.Args[0], m.Msg)
	}
	return &InitError{ID: spec.ID, Step: m.Step, Msg: m.Msg, Errno: syscall.Errno(m.Errno)}
}
