package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs/kind"
)

// Spec describes one job's sandbox.
type Spec struct {
	ID       string   // job id, for logs and errors
	Hostname string   // UTS hostname inside the job, e.g. "job-7"
	Args     []string // Args[0] is the command, looked up on PATH inside the new root
	Env      []string // complete environment for the command (caller builds the clean set)
	// RootDir is an existing, empty host directory, the mount point of
	// the tmpfs of a capped /work's upper layer (the new root itself is
	// stacked on the init's "/", see rootfs.go); the mount lives only in
	// the job's mount namespace. The caller creates and removes it.
	RootDir string
	WorkDir string // existing host directory bound read-write at /work; the command's cwd
	// Stdout and Stderr are the write ends given to the command (stdin is
	// /dev/null). Start does not close them: the caller closes its copies once
	// Start returns, so that readers see EOF when the job ends.
	Stdout, Stderr *os.File
	// Cgroup, when set, is the job's cgroup: the init is inside it before it
	// does anything for the job, so every process of the job is limited and
	// accounted from its first instruction.
	Cgroup Cgroup
	// Spawn, when set with Cgroup, runs start (the init's clone) on a
	// thread that was put in the job's cgroup beforehand (cgroup v1: a
	// shim's thread in a spare cgroup, see the cgroup package), so the init
	// is born inside with no migration at its gate. Start does not trust
	// it: before the init is let go, it checks (Holder) that the init is in
	// the cgroup in every hierarchy, and moves it in (Apply) otherwise.
	Spawn func(start func() error) error
	// NetnsPath, when set, is the nsfs file of a network namespace prepared
	// for the job (netd's attachment): the init starts inside it instead of
	// a fresh one with loopback only (see netns.go).
	NetnsPath string
	// Hosts, when set (netd's attachment), is the job's /etc/hosts, and
	// ResolvConf its /etc/resolv.conf (none when empty). Without Hosts the
	// job gets a hosts file naming itself on 127.0.1.1 and the host's
	// resolv.conf.
	ResolvConf string
	Hosts      string
	// Work, when its MaxBytes is set, caps what the job may write to /work
	// (see mountWork); Tmp caps its /tmp (zero fields: DefaultTmp's).
	Work, Tmp Storage
	// UserNS, when set, runs the command in a user namespace mapping its
	// root to that unprivileged host range, and gives it WorkDir (see
	// userns.go). Without it the command is the host's root, with the
	// reduced capabilities of confine.go.
	UserNS *UserNS
}

// Storage caps a writable directory of the job. Without Disk it is kept
// in memory (tmpfs) and charged to the job's memory cgroup as it fills.
type Storage struct {
	MaxBytes  int64 // bytes
	MaxInodes int64 // files, directories and links
	// Disk, for /work only, is the block device of a filesystem made to
	// the cap by NewWorkDisk, mounted as /work instead of the overlay.
	Disk string
}

// DefaultTmp is the cap of a job's /tmp where Spec.Tmp leaves it open.
var DefaultTmp = Storage{MaxBytes: 256 << 20, MaxInodes: 16384}

// Cgroup is the job's cgroup as Start needs it; *cgroup.Job implements it.
type Cgroup interface {
	// UseCgroupFD sets attr so that the init is born inside the cgroup
	// (cgroup v2, clone3 CLONE_INTO_CGROUP) and reports whether it can.
	UseCgroupFD(attr *syscall.SysProcAttr) (bool, error)
	// Apply moves the init, stopped at its start gate, into the cgroup
	// (cgroup v1, or wherever UseCgroupFD reports false).
	Apply(pid int) error
}

// Holder is a Cgroup that can tell whether a process is in it in every
// hierarchy; *cgroup.Job implements it. A Cgroup without it is never
// trusted to hold an init Spawn started: that init is moved in (Apply).
type Holder interface {
	Holds(pid int) (bool, error)
}

// Result is how a job's command ended.
type Result struct {
	ExitCode int // 128+Signal when killed by a signal
	Signal   int // the signal that killed the command, or 0
}

// Process is a running job: its init and everything under it.
type Process struct {
	spec  Spec
	cmd   *exec.Cmd   // nil in a process Resumed from a parked one
	proc  *os.Process // the init: cmd.Process, or the resumed one's
	sync  *os.File    // read end of the init's message pipe
	dec   *json.Decoder
	moved bool // Apply put the init in its cgroup
	// reaped is closed once the init has been reaped, by Wait or by the
	// goroutine Wait leaves to reap it (markReaped).
	reaped     chan struct{}
	reapedOnce sync.Once
}

// Cloneflags of the job's init: every namespace but the user namespace,
// which only the command gets (userns.go). The network namespace is a
// fresh one, or the one of Spec.NetnsPath (joined in netns.go).
const cloneflags = unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC

// initEnv is the init's environment: empty, never the daemon's (a nil
// exec.Cmd.Env would pass the daemon's own).
var initEnv = []string{}

// freshNetnsEnv, in the init's environment, tells it before its gate that
// it was cloned with a network namespace of its own, whose loopback it
// brings up then (see setup). The command never inherits the init's
// environment.
const freshNetnsEnv = "JOBLET_INIT_NETNS=fresh"

// Start runs spec's command in a new sandbox. It returns once the command has
// been exec'd inside the sandbox, or an error with nothing left running:
// errdefs.ErrInvalidArgument for a bad spec or a command that is not found or
// cannot be executed, *InitError when the sandbox could not be built. With
// spec.Cgroup set, the init is in that cgroup before it is let go (see the
// handshake in sync.go). It is Prefork and (*Forked).Start in one, with the
// init cloned for spec: born in spec.Cgroup where it can be, in
// spec.NetnsPath's network namespace when set.
func Start(spec Spec) (*Process, error) {
	if err := validate(&spec); err != nil {
		return nil, err
	}
	if spec.Stdout == nil || spec.Stderr == nil {
		return nil, kind.Errorf(kind.ErrInvalidArgument, "job %s: stdout and stderr are required", spec.ID)
	}
	if spec.UserNS != nil {
		// Before the init exists: nothing of the job may run while it is
		// being handed over.
		if err := spec.UserNS.ownTree(spec.WorkDir); err != nil {
			return nil, fmt.Errorf("sandbox for job %s: %w", spec.ID, err)
		}
	}
	f, err := fork(spec.Stdout, spec.Stderr, spec.Cgroup, spec.Spawn, spec.NetnsPath)
	if err != nil {
		return nil, fmt.Errorf("sandbox for job %s: %w", spec.ID, err)
	}
	return f.start(&spec)
}

// Forked is a job's init cloned ahead of its job (Prefork): in every
// namespace of its own (a fresh network namespace with loopback only), run
// up to its start gate, where it waits for its spec having done nothing
// for any job (sync.go). It has made itself non-dumpable by then, so
// nothing but the host's root can trace it or read its /proc files, and
// only its parent holds its pipes. Start gives it its job, once; Close
// makes it exit without one.
type Forked struct {
	cmd   *exec.Cmd
	specW *os.File // the parent's end of the spec socket: the gate
	syncR *os.File // read end of the init's message pipe
	// spawned: cloned by a spawn function, which may have put it in its
	// job's cgroup (checked at the gate); inside: born in the cgroup
	// (CLONE_INTO_CGROUP), which Start's clone alone knows.
	spawned, inside bool
	freshNetns      bool // in a network namespace of its own, not a netd one
	used            bool // Start or Close was called
	// joinNetns, set by Start, is the job's network namespace, which the
	// init joins at its gate.
	joinNetns *os.File
}

// Prefork clones a job's init ahead of its job, with stdout and stderr as
// the command's output to come: the spec and sync pipes, the clone with
// every namespace (a fresh network namespace), the exec of the sealed init
// binary, which waits at its start gate. With spawn set, the clone runs
// through it (on cgroup v1, the thread of a waiting shim in a spare cgroup
// that becomes the job's, see Spec.Spawn): (*Forked).Start checks that the
// init is in the job's cgroup and moves it in otherwise. The caller keeps
// stdout and stderr open until Start or Close, and closes its copies then.
func Prefork(stdout, stderr *os.File, spawn func(start func() error) error) (*Forked, error) {
	if stdout == nil || stderr == nil {
		return nil, errors.New("prefork: stdout and stderr are required")
	}
	f, err := fork(stdout, stderr, nil, spawn, "")
	if err != nil {
		return nil, fmt.Errorf("prefork: %w", err)
	}
	return f, nil
}

// fork clones an init that waits at its start gate: born in cg where
// UseCgroupFD can (cgroup v2), cloned through spawn when set (and cg did
// not take it), in the network namespace at netnsPath when set, else in a
// fresh one.
func fork(stdout, stderr *os.File, cg Cgroup, spawn func(func() error) error, netnsPath string) (*Forked, error) {
	exe, err := sealedInit()
	if err != nil {
		return nil, err
	}
	specIn, specW, err := specSocket()
	if err != nil {
		return nil, err
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		specIn.Close()
		specW.Close()
		return nil, fmt.Errorf("sync pipe: %w", err)
	}
	closeAll := func() {
		specW.Close()
		syncR.Close()
	}
	cmd := &exec.Cmd{
		Path: ExecPath(exe),
		Args: []string{initArg0},
		Env:  initEnv,
		Dir:  "/",
		// fdSpec, fdSync, fdStdout, fdStderr, fdInitExe[, fdReaperExe]
		ExtraFiles: WithExe([]*os.File{specIn, syncW, stdout, stderr}, exe),
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneflags | unix.CLONE_NEWNET,
			// Own session, and deliberately no Pdeathsig: a job outlives a
			// restart of the isolator.
			Setsid: true,
		},
	}
	if r := ReaperFile(); r != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	}
	inside := false
	if cg != nil {
		if inside, err = cg.UseCgroupFD(cmd.SysProcAttr); err != nil {
			specIn.Close()
			syncW.Close()
			closeAll()
			return nil, err
		}
	}
	if netnsPath != "" {
		cmd.SysProcAttr.Cloneflags = cloneflags
	} else {
		cmd.Env = append(slices.Clip(initEnv), freshNetnsEnv)
	}
	spawned := !inside && spawn != nil
	switch {
	case spawned:
		err = spawn(func() error {
			if netnsPath == "" {
				return cmd.Start()
			}
			target, err := openNetns(netnsPath)
			if err != nil {
				return err
			}
			defer target.Close()
			return startInNetnsHere(cmd, target)
		})
	case netnsPath != "":
		err = startInNetns(cmd, netnsPath)
	default:
		err = cmd.Start()
	}
	specIn.Close()
	syncW.Close()
	if err != nil {
		closeAll()
		if cmd.Process != nil {
			// Spawn failed after the clone: the init waits at its gate.
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return nil, fmt.Errorf("start init: %w", err)
	}
	return &Forked{cmd: cmd, specW: specW, syncR: syncR, spawned: spawned, inside: inside, freshNetns: netnsPath == ""}, nil
}

// specSocket makes the spec socket: the init's end, and the parent's,
// which writes the gate's byte (with a descriptor, when there is a
// network namespace to join: see sync.go), then the spec.
func specSocket() (initEnd, parentEnd *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("spec socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "sandbox-spec"), os.NewFile(uintptr(fds[1]), "sandbox-spec-parent"), nil
}

// openGate writes the gate's byte to the init, with netns (nil: none)
// for it to join, and spec after it in the same message: one wakeup of
// the init, not one for the byte and another for the spec, between which
// the woken init would take this process's CPU (0.5-1 ms on the job's
// start under load, traced).
func openGate(specW, netns *os.File, spec []byte) error {
	rc, err := specW.SyscallConn()
	if err != nil {
		return err
	}
	b, oob := append([]byte{gateGo}, spec...), []byte(nil)
	if netns != nil {
		b[0], oob = gateNetns, unix.UnixRights(int(netns.Fd()))
	}
	var n int
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		n, serr = unix.SendmsgN(int(fd), b, oob, nil, unix.MSG_NOSIGNAL)
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err == nil {
		err = serr
	}
	if err == nil && n < len(b) {
		// A spec larger than the socket's buffer: the rest as it drains.
		_, err = specW.Write(b[n:])
	}
	return err
}

// Pid is the host pid of the preforked init.
func (f *Forked) Pid() int { return f.cmd.Process.Pid }

// Exited reports whether the preforked init has exited (killed by someone
// while it waited): it cannot be given a job, only closed.
func (f *Forked) Exited() bool {
	var info unix.Siginfo
	// WNOWAIT: left to Close to reap.
	err := unix.Waitid(unix.P_PID, f.Pid(), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err != nil || info.Signo != 0
}

// Start gives the preforked init spec's job, as the package's Start: the
// init is put in spec.Cgroup at its gate (checked with Holder when it was
// cloned through a spawn function, else moved in with Apply) before the
// spec is written. With spec.NetnsPath, the namespace is opened here and
// passed through the gate: the init joins it before it does anything for
// the job (sync.go). spec.Stdout, spec.Stderr and spec.Spawn must be
// unset: the init has its output and was cloned. Start may be called
// once; on error, nothing is left running.
func (f *Forked) Start(spec Spec) (*Process, error) {
	if f.used {
		return nil, fmt.Errorf("sandbox for job %s: the preforked init was used already", spec.ID)
	}
	fail := func(err error) (*Process, error) {
		_ = f.Close()
		return nil, err
	}
	if err := validate(&spec); err != nil {
		return fail(err)
	}
	if spec.Stdout != nil || spec.Stderr != nil || spec.Spawn != nil {
		return fail(fmt.Errorf("sandbox for job %s: a preforked init takes no output or spawn at its start", spec.ID))
	}
	if spec.NetnsPath != "" && f.freshNetns {
		ns, err := openNetns(spec.NetnsPath)
		if err != nil {
			return fail(fmt.Errorf("sandbox for job %s: %w", spec.ID, err))
		}
		defer ns.Close()
		f.joinNetns = ns
	}
	if spec.UserNS != nil {
		// The init waits at its gate: nothing of the job runs yet.
		if err := spec.UserNS.ownTree(spec.WorkDir); err != nil {
			return fail(fmt.Errorf("sandbox for job %s: %w", spec.ID, err))
		}
	}
	return f.start(&spec)
}

// start opens the gate for spec: the init is put in spec.Cgroup, then
// given the spec; it returns once the command runs.
func (f *Forked) start(spec *Spec) (*Process, error) {
	f.used = true
	specW := f.specW
	defer specW.Close()
	p := &Process{spec: *spec, cmd: f.cmd, proc: f.cmd.Process, sync: f.syncR, dec: json.NewDecoder(f.syncR), reaped: make(chan struct{})}

	// The init waits at its gate (reading the spec) until it is in the
	// cgroup: on cgroup v1 it is moved there now, by pid, unless it was
	// born there (Spawn, or a spare it was preforked in) in every
	// hierarchy.
	inside := f.inside
	if f.spawned && spec.Cgroup != nil {
		h, ok := spec.Cgroup.(Holder)
		var err error
		if ok {
			ok, err = h.Holds(p.Pid())
		}
		if err != nil {
			specW.Close()
			p.abort()
			return nil, fmt.Errorf("sandbox for job %s: %w", spec.ID, err)
		}
		inside = ok
	}
	if spec.Cgroup != nil && !inside {
		if err := spec.Cgroup.Apply(p.Pid()); err != nil {
			specW.Close() // the init reads EOF and exits without running anything
			p.abort()
			return nil, fmt.Errorf("sandbox for job %s: %w", spec.ID, err)
		}
		p.moved = true
	}
	// The gate's byte and the spec are the go: a write error means the
	// init died; the read below reports it.
	msg, err := json.Marshal(initSpec{
		ID: spec.ID, Hostname: spec.Hostname, Args: spec.Args, Env: spec.Env,
		RootDir: spec.RootDir, WorkDir: spec.WorkDir,
		Network: spec.Hosts != "", ResolvConf: spec.ResolvConf, Hosts: spec.Hosts,
		FreshNetns: f.freshNetns && f.joinNetns == nil,
		JoinNetns:  f.joinNetns != nil,
		Work:       spec.Work,
		Tmp:        withDefaults(spec.Tmp, DefaultTmp),
		UserNS:     spec.UserNS,
	})
	if err == nil {
		_ = openGate(specW, f.joinNetns, msg)
	}
	specW.Close()

	var m message
	if err := p.dec.Decode(&m); err != nil || m.Type != msgStarted {
		p.abort()
		if err != nil {
			return nil, fmt.Errorf("sandbox for job %s: init died during setup: %w", spec.ID, err)
		}
		if m.Type == msgError {
			return nil, decodeError(spec, m)
		}
		return nil, fmt.Errorf("sandbox for job %s: unexpected %q message from init", spec.ID, m.Type)
	}
	return p, nil
}

// Close makes a preforked init that was given no job exit: it reads EOF at
// its gate and exits, having done nothing. Close returns once it is
// reaped. After Start it does nothing.
func (f *Forked) Close() error {
	if f.used {
		return nil
	}
	f.used = true
	f.specW.Close()
	err := f.cmd.Wait()
	f.syncR.Close()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return fmt.Errorf("preforked init %d: %w", f.cmd.Process.Pid, err)
	}
	return nil
}

// abort kills and reaps an init that failed to start the command.
func (p *Process) abort() {
	_ = p.proc.Kill()
	_, _ = p.waitInit()
	p.sync.Close()
}

// waitInit reaps the init: cmd.Wait, or for a resumed process the init's
// own Wait, with the same *exec.ExitError for an unsuccessful exit.
func (p *Process) waitInit() (*os.ProcessState, error) {
	if p.cmd != nil {
		err := p.cmd.Wait()
		return p.cmd.ProcessState, err
	}
	st, err := p.proc.Wait()
	if err == nil && !st.Success() {
		err = &exec.ExitError{ProcessState: st}
	}
	return st, err
}

// Parked is what a process that parks (see Park) passes on to the one that
// Resumes its job: the init's pid and the read end of its message pipe.
type Parked struct {
	PID  int
	Sync *os.File
}

// Park hands the job over for this process to be replaced (an exec)
// while the job runs on: it reports false when a message of the init has
// already been read from the pipe (its exit report: Wait is next), else
// the init's pid and the pipe, with nothing of it read ahead. After a
// true report this Process is left as it was: should the exec fail, it
// goes on (Wait) as if it had never parked.
func (p *Process) Park() (Parked, bool) {
	// The newline after the last message read may be left.
	if ahead, _ := io.ReadAll(p.dec.Buffered()); len(bytes.TrimSpace(ahead)) > 0 {
		return Parked{}, false
	}
	return Parked{PID: p.proc.Pid, Sync: p.sync}, true
}

// Resume takes over, in the process that replaced a parked one (an exec
// keeps the parked process's children), the job it parked: its Wait,
// Reaped, Terminate and Kill work as the parked Process's did.
func Resume(id string, pk Parked, moved bool) (*Process, error) {
	proc, err := os.FindProcess(pk.PID)
	if err != nil {
		return nil, fmt.Errorf("job %s: resume init %d: %w", id, pk.PID, err)
	}
	return &Process{spec: Spec{ID: id}, proc: proc, sync: pk.Sync, dec: json.NewDecoder(pk.Sync),
		moved: moved, reaped: make(chan struct{})}, nil
}

func validate(spec *Spec) error {
	bad := func(format string, args ...any) error {
		return kind.Errorf(kind.ErrInvalidArgument, "job %s: "+format, append([]any{spec.ID}, args...)...)
	}
	switch {
	case len(spec.Args) == 0 || spec.Args[0] == "":
		return bad("no command")
	case !validHostname(spec.Hostname):
		return bad("invalid hostname %q", spec.Hostname)
	}
	for _, d := range []string{spec.RootDir, spec.WorkDir} {
		if !filepath.IsAbs(d) {
			return bad("%q is not an absolute path", d)
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return bad("%q is not a directory", d)
		}
	}
	if spec.Work.Disk != "" && !filepath.IsAbs(spec.Work.Disk) {
		return bad("work disk %q is not an absolute path", spec.Work.Disk)
	}
	if spec.NetnsPath != "" && !filepath.IsAbs(spec.NetnsPath) {
		return bad("network namespace %q is not an absolute path", spec.NetnsPath)
	}
	if spec.UserNS != nil {
		if err := spec.UserNS.Validate(); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// hostNameMax is the kernel's HOST_NAME_MAX.
const hostNameMax = 64

// validHostname accepts an RFC 1123 host name the kernel takes.
func validHostname(h string) bool {
	if h == "" || len(h) > hostNameMax || h[0] == '-' || h[0] == '.' {
		return false
	}
	for _, c := range []byte(h) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}

// withDefaults fills the zero fields of s from d.
func withDefaults(s, d Storage) Storage {
	if s.MaxBytes <= 0 {
		s.MaxBytes = d.MaxBytes
	}
	if s.MaxInodes <= 0 {
		s.MaxInodes = d.MaxInodes
	}
	return s
}

// Moved reports whether the init was moved into its cgroup at its start
// gate (Apply) rather than born inside (UseCgroupFD, or Spawn).
func (p *Process) Moved() bool { return p.moved }

// Pid returns the host pid of the job's init.
func (p *Process) Pid() int { return p.proc.Pid }

// Wait blocks until the job has ended, every process of it included: the
// command and everything else of its PID namespace have exited and were
// reaped, and the init is exiting (every thread of it past the point where
// it can run anything, its memory and descriptors released). The init's
// own teardown (its namespaces and mounts) may still be under way: it is
// reaped in the background. Call Wait once, from one goroutine.
func (p *Process) Wait() (Result, error) {
	var m message
	decErr := p.dec.Decode(&m)
	if decErr == nil && m.Type == msgExit && p.awaitExiting() {
		go func() {
			_, _ = p.waitInit()
			p.markReaped()
		}()
		return Result{ExitCode: m.ExitCode, Signal: m.Signal}, nil
	}
	p.sync.Close()
	st, err := p.waitInit()
	p.markReaped()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return Result{}, fmt.Errorf("job %s: wait for init: %w", p.spec.ID, err)
	}
	if decErr == nil && m.Type == msgExit {
		return Result{ExitCode: m.ExitCode, Signal: m.Signal}, nil
	}
	// No report: the init itself was killed (Kill), and the kernel killed
	// the command with it.
	ws := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		sig := int(ws.Signal())
		return Result{ExitCode: 128 + sig, Signal: sig}, nil
	}
	return Result{ExitCode: ws.ExitStatus()}, fmt.Errorf("job %s: sandbox init exited with status %d without a result",
		p.spec.ID, ws.ExitStatus())
}

// Reaped is closed once the init has been reaped after Wait returned (Wait
// may return while the kernel still tears the init down). A caller that
// exits right after Wait waits for it first, so that the init is not left
// for the host's init to reap.
func (p *Process) Reaped() <-chan struct{} { return p.reaped }

func (p *Process) markReaped() { p.reapedOnce.Do(func() { close(p.reaped) }) }

// awaitExiting waits, after the init's exit report, until the init is
// exiting, and closes the sync pipe. The init sends the report once every
// other process of its namespace is reaped (endNamespace) and then only
// exits; its copy of the pipe, which no other process has (close-on-exec
// before the command starts), is closed when the last of its threads goes
// through the kernel's exit_files: past exit_signals and exit_mm, so no
// thread of it can return to user space. That is before its namespaces
// are torn down. It reports false if anything else arrives on the pipe.
func (p *Process) awaitExiting() bool {
	defer p.sync.Close()
	var extra message
	err := p.dec.Decode(&extra)
	return errors.Is(err, io.EOF)
}

// Terminate sends SIGTERM to every process of the job: the init forwards it
// to the whole PID namespace.
func (p *Process) Terminate() error { return p.signal(unix.SIGTERM) }

// Kill sends SIGKILL to the job's init; the kernel then kills every process
// in its PID namespace.
func (p *Process) Kill() error { return p.signal(unix.SIGKILL) }

func (p *Process) signal(sig os.Signal) error {
	// os.Process signals through a pidfd, so a recycled pid is never hit.
	err := p.proc.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("job %s: signal %v: %w", p.spec.ID, sig, err)
	}
	return nil
}
