package sandbox

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The init starts the job's command with a fork whose child makes only
// raw system calls, as the standard library's forkAndExecInChild does,
// extended with what the stdlib cannot do between fork and exec: confine
// the capabilities again and install the seccomp filter. A second Go
// runtime start (the exec stage, until session 7) cost each job about 2 ms
// of its start and 1.7 ms of CPU (bench/README.md, session 7).
//
// Between the fork and the execve the child may not allocate, take a lock,
// grow its stack or call anything that might: it runs on a copy of (or,
// with CLONE_VM, on the very) memory of a multi-threaded Go process whose
// other threads were not copied and may have held any lock. So everything
// it needs (the strings as C strings, the capability sets, the filter
// program, the descriptors) is prepared by the parent in an execPlan, and
// the child only reads it. A failing step writes its number, argument and
// errno to the report pipe and exits; the pipe is close-on-exec, so an
// empty read means the command runs.

// The Go runtime's fork hooks, as the syscall package uses them: block
// signals and poison stack growth around the fork (BeforeFork), undo that
// in the parent (AfterFork), reset signal handlers and restore the signal
// mask in the child (AfterForkInChild). They are on the runtime's list of
// linknamed symbols that must keep their signatures (go.dev/issue/67401).
//
//go:linkname runtime_BeforeFork syscall.runtime_BeforeFork
func runtime_BeforeFork()

//go:linkname runtime_AfterFork syscall.runtime_AfterFork
func runtime_AfterFork()

//go:linkname runtime_AfterForkInChild syscall.runtime_AfterForkInChild
func runtime_AfterForkInChild()

// Steps of the command's child, as its report names them.
const (
	childMaps       uint32 = iota + 1 // wait for the user namespace's maps
	childSetsid                       // setsid
	childSetgroups                    // setgroups: no supplementary groups
	childSetgid                       // setgid 0 in the user namespace
	childSetuid                       // setuid 0 in the user namespace
	childStdio                        // dup3 of descriptor arg onto 0, 1 or 2
	childNofile                       // give back the open files limit
	childDropBound                    // PR_CAPBSET_DROP of capability arg
	childCapset                       // capset
	childAmbient                      // clear the ambient set
	childNoNewPrivs                   // PR_SET_NO_NEW_PRIVS
	childSeccomp                      // seccomp(SECCOMP_SET_MODE_FILTER)
	childExec                         // execve
)

// childReport is what a failed child writes to the report pipe: a step,
// its argument and the errno.
type childReport [3]uint32

// execPlan is everything the command's child uses, prepared by the parent.
type execPlan struct {
	path       *byte
	argv, envv []*byte // nil-terminated
	// stdio are the descriptors the child makes 0, 1 and 2; all above 2,
	// so that none is overwritten before it is used.
	stdio  [3]uintptr
	report uintptr // write end of the report pipe, close-on-exec
	// With a user namespace, the child waits for the parent to write its
	// maps: it reads mapW's other end, mapR, to one errno (0: written).
	userns     bool
	mapR, mapW uintptr
	flags      uintptr      // clone flags, SIGCHLD included
	nofile     *unix.Rlimit // the open files limit to give back, or nil
	caps       *capPlan
	filter     *unix.SockFprog
}

// forkCommand forks the child that execs p's command, and returns its pid.
// The child is in its user namespace (p.flags) but waits for its maps when
// p.userns; without a user namespace it is a vfork child, and forkCommand
// returns once it has exec'd or failed.
func forkCommand(p *execPlan) (int, error) {
	// As the stdlib does: no other goroutine's descriptor is created
	// without close-on-exec while the child is copied.
	syscall.ForkLock.Lock()
	pid, errno, locked := forkChild(p)
	if locked {
		runtime_AfterFork()
	}
	syscall.ForkLock.Unlock()
	if errno != 0 {
		return 0, errno
	}
	return int(pid), nil
}

// forkChild forks; the child runs p to its execve and never returns. With
// CLONE_VM the child runs on this frame's stack: it may not return, and
// the parent returns at once, using only what the clone returned.
//
//go:noinline
//go:norace
//go:nocheckptr
func forkChild(p *execPlan) (pid uintptr, err1 syscall.Errno, locked bool) {
	// Every variable is declared before the fork: nothing may be
	// allocated after it.
	var (
		rep    childReport
		mapErr uint32
		n      uintptr
		i      int
	)
	runtime_BeforeFork()
	locked = true
	pid, err1 = cloneChild(p.flags)
	if err1 != 0 || pid != 0 {
		return
	}

	// The child.
	if p.userns {
		syscall.RawSyscall(unix.SYS_CLOSE, p.mapW, 0, 0)
		rep[0] = childMaps
		n, _, err1 = syscall.RawSyscall(unix.SYS_READ, p.mapR, uintptr(unsafe.Pointer(&mapErr)), unsafe.Sizeof(mapErr))
		if err1 != 0 {
			goto fail
		}
		if n != unsafe.Sizeof(mapErr) {
			err1 = syscall.EINVAL
			goto fail
		}
		if mapErr != 0 {
			err1 = syscall.Errno(mapErr)
			goto fail
		}
	}
	// A session of its own and no controlling terminal.
	rep[0] = childSetsid
	if _, _, err1 = syscall.RawSyscall(unix.SYS_SETSID, 0, 0, 0); err1 != 0 {
		goto fail
	}
	runtime_AfterForkInChild()
	if p.userns {
		// Root of the user namespace: until now the child is the host's
		// root, which is nobody there.
		rep[0] = childSetgroups
		if _, _, err1 = syscall.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); err1 != 0 {
			goto fail
		}
		rep[0] = childSetgid
		if _, _, err1 = syscall.RawSyscall(unix.SYS_SETGID, 0, 0, 0); err1 != 0 {
			goto fail
		}
		rep[0] = childSetuid
		if _, _, err1 = syscall.RawSyscall(unix.SYS_SETUID, 0, 0, 0); err1 != 0 {
			goto fail
		}
	}
	// 0, 1, 2 without close-on-exec; every other descriptor of the init is
	// close-on-exec (closeExecFrom), the pipes of this start included.
	rep[0] = childStdio
	for i = 0; i < len(p.stdio); i++ {
		rep[1] = uint32(p.stdio[i])
		if _, _, err1 = syscall.RawSyscall(unix.SYS_DUP3, p.stdio[i], uintptr(i), 0); err1 != 0 {
			goto fail
		}
	}
	rep[1] = 0
	if p.nofile != nil {
		rep[0] = childNofile
		if _, _, err1 = syscall.RawSyscall6(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_NOFILE, uintptr(unsafe.Pointer(p.nofile)), 0, 0, 0); err1 != 0 {
			goto fail
		}
	}
	// The confinement of confineThread, again: a new user namespace starts
	// with every capability, the bounding set's included.
	rep[0] = childDropBound
	for i = 0; i < len(p.caps.drop); i++ {
		rep[1] = uint32(p.caps.drop[i])
		if _, _, err1 = syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, p.caps.drop[i], 0, 0, 0, 0); err1 != 0 {
			goto fail
		}
	}
	rep[1] = 0
	rep[0] = childCapset
	if _, _, err1 = syscall.RawSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&p.caps.hdr)), uintptr(unsafe.Pointer(&p.caps.data[0])), 0); err1 != 0 {
		goto fail
	}
	rep[0] = childAmbient
	if _, _, err1 = syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); err1 != 0 {
		goto fail
	}
	rep[0] = childNoNewPrivs
	if _, _, err1 = syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); err1 != 0 {
		goto fail
	}
	rep[0] = childSeccomp
	if _, _, err1 = syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(p.filter))); err1 != 0 {
		goto fail
	}
	rep[0] = childExec
	_, _, err1 = syscall.RawSyscall(unix.SYS_EXECVE,
		uintptr(unsafe.Pointer(p.path)),
		uintptr(unsafe.Pointer(&p.argv[0])),
		uintptr(unsafe.Pointer(&p.envv[0])))

fail:
	rep[2] = uint32(err1)
	syscall.RawSyscall(unix.SYS_WRITE, p.report, uintptr(unsafe.Pointer(&rep[0])), unsafe.Sizeof(rep))
	for {
		syscall.RawSyscall(unix.SYS_EXIT, 253, 0, 0)
	}
}
