package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/shim/wire"
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
	shim       store.Proc
	init       store.Proc // zero when it could not be identified
	resultFile string     // the shim's result file
	exited     chan struct{}
	// commandEnded is closed once the shim says the job's command ended
	// and nothing of the job runs (wire.MsgExited), or the job's end is
	// known (ended). Adopt has no pipe: it is exited.
	commandEnded chan struct{}
	// ended is closed once the shim sent the job's Result on its status
	// pipe (result) or closed the pipe, after its result file is in place
	// (or as it died without one): the job's end is known then, without
	// the shim's exit (see Wait). Adopt has no pipe: ended is exited.
	ended  chan struct{}
	result *wire.Result // the Result the shim sent; set before ended is closed
	detach chan struct{}
	once   sync.Once
	moved  bool // the init was moved into its cgroup (cgroup v1 without a spare)
}

// Idle is a shim started ahead of its job: it has run its Go start and
// waits for its Spec. Start gives it one, once; Close stops it. Closing
// the spec pipe without a Spec (the isolator died, or Close) makes the shim
// exit at once, having done nothing: no result file, no cgroup, no log.
type Idle struct {
	pid    int
	id     store.Proc
	pidfd  *os.File
	exited chan struct{} // closed once the shim has exited and was reaped
	specW  *os.File
	statR  *os.File
	dec    *json.Decoder // of statR
	spare  Spare         // nil: none
	// initPID is the job's init the shim preforked in its spare (0: none,
	// or not known yet): see awaitPlaced.
	initPID int
}

// Start starts a shim for spec and returns once the job's command runs, or
// the start error (of an errdefs kind when the user can act on it) with
// nothing of the job left running.
func Start(spec Spec) (*Process, error) {
	w, err := Prestart()
	if err != nil {
		return nil, fmt.Errorf("shim for job %s: %w", spec.ID, err)
	}
	return w.Start(spec)
}

// Prestart starts a shim that waits for its job (see Idle).
func Prestart() (*Idle, error) { return PrestartIn(nil) }

// PrestartIn is Prestart for a shim that waits in spare (nil: none): see
// Spare. The shim owns spare from then on, and removes it once nothing of
// it is in it, unless the spare became its job's cgroup. On error the
// spare is removed.
func PrestartIn(spare Spare) (*Idle, error) {
	w, err := prestart(spare)
	if err != nil && spare != nil {
		err = errors.Join(err, spare.Remove())
	}
	return w, err
}

func prestart(spare Spare) (*Idle, error) {
	exe, err := executable()
	if err != nil {
		return nil, err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("spec pipe: %w", err)
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, fmt.Errorf("status pipe: %w", err)
	}
	// Its stdin, stdout and stderr are /dev/null, so a dead isolator's
	// pipes can never kill it; then FDSpec, FDStatus, FDShimExe (its own
	// executable: see sandbox.WithExe) and, when jobs' inits have a binary
	// of their own, FDInit: that sealed copy is shared by every shim, never
	// copied per job.
	files, env := sandbox.WithExe([]*os.File{null, null, null, specR, statW}, exe), shimEnv
	if f := sandbox.InitFile(); f != nil {
		// Said in the environment: a descriptor the isolator itself
		// inherited without close-on-exec would be open there too.
		files, env = append(files, f), append(slices.Clip(env), wire.InitFDEnv)
		if r := sandbox.ReaperFile(); r != nil {
			files, env = append(files, r), append(env, wire.ReaperFDEnv)
		}
	}
	if spare != nil {
		e, err := spareEnvOf(spare)
		if err != nil {
			return nil, fmt.Errorf("spare cgroup: %w", err)
		}
		env = append(slices.Clip(env), e)
	}
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: files,
		// A session of its own and no parent-death signal: the shim, and so
		// the job, outlive the isolator.
		Sys: &syscall.SysProcAttr{Setsid: true},
	}
	proc, err := os.StartProcess(sandbox.ExecPath(exe), []string{wire.Arg0}, attr)
	specR.Close()
	statW.Close()
	if err != nil {
		specW.Close()
		statR.Close()
		return nil, fmt.Errorf("start: %w", err)
	}
	// The shim is our child, so its pid cannot be reused before we reap it:
	// the pidfd is the shim's. The watcher reaps it once it exits, from
	// the netpoller, so no OS thread waits for any shim (an exec.Cmd or
	// os.Process Wait blocks one thread per shim for the job's life).
	fd, err := unix.PidfdOpen(proc.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		_ = proc.Kill()
		_, _ = proc.Wait()
		specW.Close()
		statR.Close()
		return nil, fmt.Errorf("pidfd_open: %w", err)
	}
	pid := proc.Pid
	_ = proc.Release() // never Waited: the watcher reaps it (Release sets Pid to -1)
	w := &Idle{pid: pid, pidfd: os.NewFile(uintptr(fd), "shim-pidfd"), exited: make(chan struct{}), specW: specW, statR: statR, dec: json.NewDecoder(statR)}
	go watch(w.pidfd, true, w.exited)
	if w.id, err = store.Identify(w.pid); err != nil {
		w.Close() // the caller removes the spare
		return nil, fmt.Errorf("identify: %w", err)
	}
	if spare != nil {
		w.spare = spare
		w.awaitPlaced()
	}
	return w, nil
}

// placeTimeout bounds how long PrestartIn waits for the shim's thread to
// join its spare and clone the job's init there: each of its writes may
// wait for an RCU grace period.
const placeTimeout = 2 * time.Second

// awaitPlaced returns once the shim says it waits (wire.MsgWaiting): its
// spawner thread is in the spare and the job's init preforked there (a job
// given the shim earlier would wait for the rest of it), or the shim died,
// or placeTimeout passed: a shim only partly placed still works, its job's
// init is moved in where it is not, and Start skips the late message.
func (w *Idle) awaitPlaced() {
	if err := w.statR.SetReadDeadline(time.Now().Add(placeTimeout)); err != nil {
		return
	}
	var m wire.Message
	err := w.dec.Decode(&m)
	_ = w.statR.SetReadDeadline(time.Time{})
	if err != nil {
		// Nothing was read (a message is one write, smaller than a pipe's
		// atomic write): a new decoder reads what comes next.
		w.dec = json.NewDecoder(w.statR)
		return
	}
	if m.Type == wire.MsgWaiting {
		w.initPID = m.PID
	}
}

// InitPID is the pid of the job's init the shim preforked in its spare
// (it waits at its start gate until the job's Spec), 0 when none is known.
func (w *Idle) InitPID() int { return w.initPID }

// Pid is the shim's pid.
func (w *Idle) Pid() int { return w.pid }

// Alive reports whether the shim still waits for its Spec: one that died
// (killed by someone) must not be given a job.
func (w *Idle) Alive() bool {
	select {
	case <-w.exited:
		return false
	default:
	}
	// The watcher may not have run yet: ask the pidfd itself, which
	// turns readable as the shim exits.
	rc, err := w.pidfd.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	if err := rc.Control(func(fd uintptr) {
		exited, err := pidfdExited(fd)
		alive = err == nil && !exited
	}); err != nil {
		return false // closed: the watcher saw it exit
	}
	return alive
}

// Spare is the spare cgroup the shim waits in, nil when none.
func (w *Idle) Spare() Spare { return w.spare }

// closeTimeout bounds how long Close lets a shim with a spare end by
// itself before it is killed: it reaps its preforked init, then exits.
const closeTimeout = 2 * time.Second

// Close stops a shim that was not given a job, and returns once it is
// reaped; then its spare is removed, once the job's init the shim preforked
// there has exited too. The error is the spare's removal's.
func (w *Idle) Close() error {
	w.specW.Close()
	w.statR.Close()
	if w.spare != nil {
		// At the spec pipe's EOF the shim closes its preforked init (which
		// exits at its gate) and reaps it, then exits: no orphan is left
		// for the host's init to reap.
		select {
		case <-w.exited:
		case <-time.After(closeTimeout):
		}
	}
	w.kill()
	<-w.exited
	return w.removeDeadSpare()
}

// removeSpare removes the shim's spare, once nothing of the shim is in it.
func (w *Idle) removeSpare() error {
	if w.spare == nil {
		return nil
	}
	return w.spare.Remove()
}

// spareExitTimeout bounds the wait for a process left in a dead shim's
// spare to exit once killed.
const spareExitTimeout = 5 * time.Second

// removeDeadSpare removes the spare of a shim that is reaped, once no
// process is left in it: the job's init the shim preforked there, when
// the shim was killed before it could reap it, is an orphan waiting at its
// gate (it exits as it reads the spec pipe's EOF; it is killed to be
// sure) and is waited for through a pidfd, since the cgroup library's
// removal of a busy cgroup fails without retrying. A spare that became a
// job's cgroup is gone under its name, and nothing in it is touched.
func (w *Idle) removeDeadSpare() error {
	if w.spare == nil {
		return nil
	}
	var errs []error
	for _, d := range w.spare.Dirs() {
		for _, pid := range procsIn(d) {
			if err := killAndAwait(pid, d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(append(errs, w.spare.Remove())...)
}

// procsIn lists the processes in cgroup directory dir; none when it is
// gone.
func procsIn(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAndAwait kills process pid, found in cgroup dir, and returns once it
// has exited (it is then out of every cgroup, even before it is reaped).
func killAndAwait(pid int, dir string) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open of %d in spare: %w", pid, err)
	}
	defer unix.Close(fd)
	// Checked after pinning the pid: a pid reused since it was listed is
	// not in the spare, and is left alone.
	if !slices.Contains(procsIn(dir), pid) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %d in spare: %w", pid, err)
	}
	deadline := time.Now().Add(spareExitTimeout)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(time.Until(deadline).Milliseconds()))
		switch {
		case errors.Is(err, unix.EINTR) && time.Now().Before(deadline):
			continue
		case err != nil:
			return fmt.Errorf("wait for %d in spare: %w", pid, err)
		case n == 0:
			return fmt.Errorf("process %d still in spare %v after SIGKILL", pid, spareExitTimeout)
		}
		return nil
	}
}

// kill sends SIGKILL to the shim through its pidfd (no reused pid can be
// hit); a shim already gone is no error.
func (w *Idle) kill() {
	if rc, err := w.pidfd.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0) })
	}
}

// Start gives the shim spec and returns once the job's command runs, as
// the package's Start. It may be called once.
func (w *Idle) Start(spec Spec) (*Process, error) {
	fail := func(err error) (*Process, error) {
		w.statR.Close()
		w.specW.Close()
		w.kill()
		<-w.exited
		return nil, errors.Join(err, w.removeDeadSpare())
	}
	// The shim waits for its spec, so its job's cgroup can still be made
	// around it (the systemd driver's scope) before anything of the job
	// exists.
	if spec.Placer != nil {
		paths, err := spec.Placer.Place(w.pid)
		if err != nil {
			return fail(fmt.Errorf("shim for job %s: %w", spec.ID, err))
		}
		spec.Cgroup = paths
	}
	// A write error means the shim died; the read below reports it.
	_ = json.NewEncoder(w.specW).Encode(spec)
	w.specW.Close()
	var m wire.Message
	err := w.dec.Decode(&m)
	for err == nil && m.Type == wire.MsgWaiting {
		// Late: awaitPlaced gave up on it.
		m = wire.Message{}
		err = w.dec.Decode(&m)
	}
	if err != nil || m.Type != wire.MsgStarted {
		if err == nil && m.Type == wire.MsgError {
			// The shim closes the job's log, then exits; its watcher reaps
			// it. Its spawner thread ended before it reported.
			w.statR.Close()
			return nil, errors.Join(wire.DecodeError(m), w.removeSpare())
		}
		return fail(fmt.Errorf("shim for job %s died during setup (%v)", spec.ID, err))
	}
	// The shim's spawner thread ended before it reported: a spare that did
	// not become the job's cgroup is empty. Its removal failing leaves a
	// directory, not a broken job.
	_ = w.removeSpare()
	p := &Process{shim: w.id, resultFile: spec.Result, exited: w.exited, commandEnded: make(chan struct{}), ended: make(chan struct{}), detach: make(chan struct{}), moved: m.Moved}
	if init, err := store.Identify(m.PID); err == nil {
		p.init = init
	} // else the job already ended: there is nothing left to signal
	go p.follow(w.statR, w.dec)
	return p, nil
}

// follow reads the shim's status pipe (through dec, which may hold what
// followed the "started" message): "exited" closes commandEnded, and
// "ended" gives the Result and closes ended, as does the pipe's EOF
// without it. The shim closes the pipe right after its result file is
// renamed into place, and the kernel closes it as the shim dies. Nobody
// else holds its write end: the shim's copy is close-on-exec, so the job's
// init never has it. It waits in the netpoller, not on a thread.
func (p *Process) follow(statR *os.File, dec *json.Decoder) {
	defer statR.Close()
	cmdOpen := true
	for p.result == nil {
		var m wire.Message
		if err := dec.Decode(&m); err != nil {
			break
		}
		switch m.Type {
		case wire.MsgExited:
			if cmdOpen {
				close(p.commandEnded)
				cmdOpen = false
			}
		case wire.MsgEnded:
			p.result = m.Result
		}
	}
	if cmdOpen {
		close(p.commandEnded)
	}
	close(p.ended)
}

// Adopt finds the shim of job a previous isolator started: shim and init
// are their identities as recorded, result the shim's result file. A shim
// still running is watched again; one that is gone must have left its
// result, else the error is ErrNoResult.
func Adopt(shim, init store.Proc, result string) (*Process, error) {
	p := &Process{shim: shim, init: init, resultFile: result, exited: make(chan struct{}), detach: make(chan struct{})}
	// A shim started by another isolator has no pipe to this one: its
	// exit tells that its result is written.
	p.ended, p.commandEnded = p.exited, p.exited
	fd, err := unix.PidfdOpen(shim.PID, unix.PIDFD_NONBLOCK)
	switch {
	case errors.Is(err, unix.ESRCH):
	case err != nil:
		return nil, fmt.Errorf("pidfd_open of shim %d: %w", shim.PID, err)
	case shim.Alive(): // checked after pinning the pid: a reuse cannot slip in
		// Another isolator's child: its parent (or init) reaps it.
		go watch(os.NewFile(uintptr(fd), "shim-pidfd"), false, p.exited)
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

// watch closes exited once the process of pidfd has exited (its pidfd
// turns readable) and, when it is this process's child (reap), was
// reaped; then pidfd is closed. It waits in the netpoller, not on a
// thread of its own, and goes on after a Detach, so that a shim this
// isolator started never stays a zombie while the isolator runs.
func watch(pidfd *os.File, reap bool, exited chan struct{}) {
	defer close(exited)
	defer pidfd.Close()
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		if exited, err := pidfdExited(fd); err != nil || !exited {
			return false
		}
		if reap {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
			if err == nil && info.Signo == 0 {
				// Exited, but not ours to reap yet: a tracer (strace, a
				// debugger) is told first, and the kernel wakes the pidfd
				// again once it has waited. Else the shim stays a zombie.
				return false
			}
		}
		return true
	})
}

// pidfdExited reports whether the process of pidfd has exited (the pidfd
// is readable), without waiting. A poll a signal interrupted is made again:
// EINTR says nothing of the process, and it is frequent here (the Go
// runtime sends SIGURG to its own threads to preempt goroutines, and the
// isolator gets a SIGCHLD for every shim that exits). Taken for an exit, it
// made Take kill a live waiting shim (and start the job under a new one);
// in watch, it would leave the watcher waiting for a readiness the
// netpoller had already reported, so the shim would never be reaped.
func pidfdExited(fd uintptr) (bool, error) {
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		if !errors.Is(err, unix.EINTR) {
			return n > 0, err
		}
	}
}

// InitMoved reports whether the job's init was moved into its cgroup at
// its start gate (a cgroup.procs write on cgroup v1, which waits for an
// RCU grace period) rather than born there: false for a job whose cgroup
// was its shim's spare, or on cgroup v2. Unknown (false) after Adopt.
func (p *Process) InitMoved() bool { return p.moved }

// Shim is the identity of the shim process.
func (p *Process) Shim() store.Proc { return p.shim }

// Pid is the host pid of the job's init, 0 when the job ended before it
// could be identified.
func (p *Process) Pid() int { return p.init.PID }

// CommandEnded is closed once the job's command has ended and nothing of
// the job runs any more (its init is exiting), before the job's Result is
// known: the shim then waits for logd to complete the job's log. It is
// closed when Wait's result is there too (a shim that died, one adopted
// from an earlier isolator: the shim's exit).
func (p *Process) CommandEnded() <-chan struct{} { return p.commandEnded }

// Wait waits for the job's result and returns it; ErrDetached once Detach
// is called. The result is taken as soon as the shim has sent it on its
// status pipe (or, from an older shim, once it closed the pipe after
// writing its result file), not once the shim has exited: what is left of
// the shim then is its result file and its Go runtime's teardown (1-2 ms),
// and the shim is no part of the job: it is never in the job's cgroup once
// it reported the start (its spawner thread has ended; with the systemd
// driver it sits in the scope's "shim" cgroup, beside the job's), so the
// job's end can be recorded before it exits. A shim adopted from an
// earlier isolator is waited for (its exit is all this isolator can see);
// the watcher reaps this isolator's shims either way.
func (p *Process) Wait() (Result, error) {
	select {
	case <-p.ended:
	case <-p.detach:
		return Result{}, ErrDetached
	}
	if p.result != nil {
		r := *p.result
		if r.Error != "" {
			return r, fmt.Errorf("shim: %s", r.Error)
		}
		return r, nil
	}
	r, err := ReadResult(p.resultFile)
	if errors.Is(err, os.ErrNotExist) {
		return Result{}, ErrNoResult
	}
	// A torn result (empty, or cut short) is none: it is written without
	// fsync (wire.WriteResult), so the machine crashed after its rename and
	// before its data reached the disk, and the job is lost.
	if syn := (*json.SyntaxError)(nil); errors.As(err, &syn) {
		return Result{}, fmt.Errorf("%w: %w", ErrNoResult, err)
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
	p.once.Do(func() { close(p.detach) })
}

// exitTimeout bounds Release's wait for a shim's exit: once its result is
// written, all it does is exit.
const exitTimeout = 5 * time.Second

// Release waits, once the job's end is recorded, for the shim to be gone
// (Wait returns before the shim's exit; this isolator's own shims are
// reaped by then), so that nothing of a job outlives its supervision and
// an isolator shutting down leaves no shim of an ended job behind, then
// removes the shim's result file: after the shim's exit, since the shim
// writes it after sending the Result (Wait).
func (p *Process) Release() error {
	var err error
	select {
	case <-p.exited:
	case <-time.After(exitTimeout):
		err = fmt.Errorf("shim %d still running %v after its result", p.shim.PID, exitTimeout)
	}
	if rerr := os.Remove(p.resultFile); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
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
