package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/store"
)

// ErrDetached is what Wait returns once Detach was called: the job goes
// on under its shim, and a later isolator adopts it.
var ErrDetached = errors.New("detached from the job's shim")

// ErrNoResult is what Wait returns when the shim ended without recording
// how the job ended, and Adopt when the shim is gone and left no result.
var ErrNoResult = errors.New("the job's shim ended without recording a result")

// shimEnv is the shim's whole environment: one OS thread runs Go code, as
// the shim mostly waits; nothing of the daemon's is passed on.
var shimEnv = []string{"GOMAXPROCS=1"}

// Process is a job's shim as the isolator sees it.
type Process struct {
	shim   store.Proc
	init   store.Proc // zero when it could not be identified
	result string     // the shim's result file
	pidfd  *os.File   // the shim's pidfd; nil once it is known to be gone
	exited chan struct{}
	detach chan struct{}
	once   sync.Once
}

// Start starts a shim for spec and returns once the job's command runs, or
// the start error (of an errdefs kind when the user can act on it) with
// nothing of the job left running.
func Start(spec Spec) (*Process, error) {
	exe, err := sandbox.Executable()
	if err != nil {
		return nil, fmt.Errorf("shim for job %s: %w", spec.ID, err)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("shim for job %s: spec pipe: %w", spec.ID, err)
	}
	defer specW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return nil, fmt.Errorf("shim for job %s: status pipe: %w", spec.ID, err)
	}
	defer statR.Close()
	newCmd := func() *exec.Cmd {
		return &exec.Cmd{
			Path:       exe,
			Args:       []string{arg0},
			Env:        shimEnv,
			Dir:        "/",
			ExtraFiles: []*os.File{specR, statW}, // fdSpec, fdStatus
			// A session of its own and no parent-death signal: the shim, and
			// so the job, outlive the isolator. Its stdin, stdout and stderr
			// are /dev/null, so a dead isolator's pipes can never kill it.
			SysProcAttr: &syscall.SysProcAttr{Setsid: true},
		}
	}
	cmd := newCmd()
	err = cmd.Start()
	// Once in a few thousand starts under load (seen in CI: 200 scheduled
	// jobs due at once) the exec of the sealed copy failed with EACCES, and
	// the same exec an instant later works; the cause is not understood.
	// A failed Start leaves the pipes open, so it is tried again, a few
	// times, before the job fails.
	for try := 1; try <= 3 && errors.Is(err, syscall.EACCES); try++ {
		time.Sleep(time.Duration(try) * 10 * time.Millisecond)
		cmd = newCmd()
		err = cmd.Start()
	}
	specR.Close()
	statW.Close()
	if err != nil {
		return nil, fmt.Errorf("shim for job %s: start: %w", spec.ID, err)
	}
	// The shim is our child, so its pid cannot be reused before we reap it.
	reaped := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(reaped)
	}()
	fail := func(err error) (*Process, error) {
		_ = cmd.Process.Kill()
		<-reaped
		return nil, err
	}
	id, err := store.Identify(cmd.Process.Pid)
	if err != nil {
		return fail(fmt.Errorf("shim for job %s: identify: %w", spec.ID, err))
	}
	fd, err := unix.PidfdOpen(cmd.Process.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return fail(fmt.Errorf("shim for job %s: pidfd_open: %w", spec.ID, err))
	}
	pidfd := os.NewFile(uintptr(fd), "shim-pidfd")
	// The shim waits for its spec, so its job's cgroup can still be made
	// around it (the systemd driver's scope) before anything of the job
	// exists.
	if spec.Placer != nil {
		paths, err := spec.Placer.Place(cmd.Process.Pid)
		if err != nil {
			pidfd.Close()
			return fail(fmt.Errorf("shim for job %s: %w", spec.ID, err))
		}
		spec.Cgroup = paths
	}
	// A write error means the shim died; the read below reports it.
	_ = json.NewEncoder(specW).Encode(spec)
	specW.Close()
	var m message
	if err := json.NewDecoder(statR).Decode(&m); err != nil || m.Type != msgStarted {
		pidfd.Close()
		if err == nil && m.Type == msgError {
			// The shim closes the job's log, then exits; it is reaped
			// meanwhile.
			return nil, decodeError(m)
		}
		return fail(fmt.Errorf("shim for job %s died during setup (%v)", spec.ID, err))
	}
	p := &Process{shim: id, result: spec.Result, pidfd: pidfd, exited: make(chan struct{}), detach: make(chan struct{})}
	if init, err := store.Identify(m.PID); err == nil {
		p.init = init
	} // else the job already ended: there is nothing left to signal
	go p.watch()
	return p, nil
}

// Adopt finds the shim of job a previous isolator started: shim and init
// are their identities as recorded, result the shim's result file. A shim
// still running is watched again; one that is gone must have left its
// result, else the error is ErrNoResult.
func Adopt(shim, init store.Proc, result string) (*Process, error) {
	p := &Process{shim: shim, init: init, result: result, exited: make(chan struct{}), detach: make(chan struct{})}
	fd, err := unix.PidfdOpen(shim.PID, unix.PIDFD_NONBLOCK)
	switch {
	case errors.Is(err, unix.ESRCH):
	case err != nil:
		return nil, fmt.Errorf("pidfd_open of shim %d: %w", shim.PID, err)
	case shim.Alive(): // checked after pinning the pid: a reuse cannot slip in
		p.pidfd = os.NewFile(uintptr(fd), "shim-pidfd")
		go p.watch()
		return p, nil
	default:
		unix.Close(fd)
	}
	if _, err := os.Stat(result); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoResult
		}
		return nil, err
	}
	close(p.exited)
	return p, nil
}

// watch closes p.exited once the shim has exited (its pidfd turns
// readable), unless Detach closes the pidfd first.
func (p *Process) watch() {
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return
	}
	err = rc.Read(func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return err == nil && n > 0
	})
	if err == nil {
		close(p.exited)
	}
}

// Shim is the identity of the shim process.
func (p *Process) Shim() store.Proc { return p.shim }

// Pid is the host pid of the job's init, 0 when the job ended before it
// could be identified.
func (p *Process) Pid() int { return p.init.PID }

// Wait waits for the shim to end and returns the job's result; ErrDetached
// once Detach is called.
func (p *Process) Wait() (Result, error) {
	select {
	case <-p.exited:
	case <-p.detach:
		return Result{}, ErrDetached
	}
	if p.pidfd != nil {
		p.pidfd.Close()
	}
	r, err := ReadResult(p.result)
	if errors.Is(err, os.ErrNotExist) {
		return Result{}, ErrNoResult
	}
	if err != nil {
		return Result{}, err
	}
	if r.Error != "" {
		return r, fmt.Errorf("shim: %s", r.Error)
	}
	return r, nil
}

// Detach makes Wait return ErrDetached: the isolator stops following the
// job (it is shutting down) and leaves it running.
func (p *Process) Detach() {
	p.once.Do(func() {
		close(p.detach)
		if p.pidfd != nil {
			p.pidfd.Close()
		}
	})
}

// Release removes the shim's result file, once the job's end is recorded.
func (p *Process) Release() error {
	if err := os.Remove(p.result); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Terminate sends SIGTERM to the job's init, which forwards it to every
// process of the job.
func (p *Process) Terminate() error { return p.signalInit(unix.SIGTERM) }

// Kill sends SIGKILL to the job's init; the kernel then kills every
// process in its PID namespace.
func (p *Process) Kill() error { return p.signalInit(unix.SIGKILL) }

// signalInit signals the job's init through a pidfd, after checking it is
// still the process that was identified, so a reused pid is never hit.
func (p *Process) signalInit(sig unix.Signal) error {
	if p.init.PID <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(p.init.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open of init %d: %w", p.init.PID, err)
	}
	defer unix.Close(fd)
	if !p.init.Alive() {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal init %d: %w", p.init.PID, err)
	}
	return nil
}
