package sandbox

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Once the command runs, all a job's init does for the rest of the job is
// forward three signals, reap, end the namespace and report: a Go process
// holding some 3 MB and several threads for that, once per running job. So
// the init replaces itself (execveat of the sealed reaper binary, passed on
// fdReaperExe) with sandbox/reaper/reaper.c, a few KB of raw system calls
// that do the same, with the same message bytes and the same ordering (the
// report means nothing of the job runs any more).
//
// No SIGTERM, SIGINT or SIGHUP sent to PID 1 may be lost across the exec.
// A handler does not survive execve; a blocked signal stays pending across
// it, and the reaper only ever takes them with sigtimedwait, with the mask
// it inherits. The init's other threads cannot be made to block them (the
// runtime unblocks them on every thread it starts, and a mask changed from
// a signal handler, as syscall.AllThreadsSyscall runs calls, is restored
// when the handler returns), and the signals they take go to the Go
// runtime, whose queue is lost with the exec. So:
//
//  1. this thread (locked, the one that execs) blocks them: what it would
//     take stays pending for the reaper;
//  2. their handler becomes forwardSignal (forward_linux_amd64.s), which
//     forwards them itself, kill(-1), on whichever other thread takes one,
//     before it returns: from here on, none goes to the Go runtime;
//  3. the init sends itself the marker (flushSignal) and waits until the
//     forwarder goroutine sees it. The runtime hands caught signals to
//     os/signal in the order they were queued, those queued together in
//     signal number order (the marker's is above the three), and the
//     forwarder sends on every one handed to it before the marker: each
//     signal the Go runtime caught before step 2 has been forwarded;
//  4. the exec: a raw system call.
//
// One case the argument does not cover, inherent to exec in a
// multi-threaded process: another thread that takes a signal in the few
// microseconds before execve kills it, after the kernel gave it the signal
// and before forwardSignal runs, dies without forwarding it. The stress
// test (TestReaperNoSignalLostAtHandover) sends SIGTERM across the
// handover: none lost in its runs.
//
// signal.Reset (or Ignore) instead would lose them: a signal with its
// default action is fatal to a Go process's init through another thread
// (the runtime's handler re-raises it), and an ignored one is discarded.

// fdReaperExe is the init's inherited sealed reaper binary, when its
// parent has one (see fork); close-on-exec from the command's start on.
const fdReaperExe = 8

// reaperArg0 is the reaper's argv[0]; its argv[1] is the command's pid.
const reaperArg0 = "joblet-sandbox-reaper"

// forwarded are the signals PID 1 forwards to the job, forwardedSignals
// the same as a list; flushSignal is the marker of step 3: ignored by
// default (by the kernel and the Go runtime), numbered above them, and
// sent to an init by nobody else (the host's stop path sends SIGTERM and
// SIGKILL).
var (
	forwarded        = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP}
	forwardedSignals = []unix.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP}
)

const flushSignal = unix.SIGWINCH

// forwardedMask is forwarded as a kernel sigset (the first word).
const forwardedMask = 1<<(unix.SIGTERM-1) | 1<<(unix.SIGINT-1) | 1<<(unix.SIGHUP-1)

// inheritedReaper returns fdReaperExe when it holds a sealed memfd (the
// parent passed a reaper binary), else -1.
func inheritedReaper() int {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fdReaperExe))
	if err != nil || !strings.HasPrefix(target, "/memfd:") {
		return -1
	}
	// Not through an *os.File, whose finalizer would close the descriptor.
	seals, err := unix.FcntlInt(fdReaperExe, unix.F_GET_SEALS, 0)
	if err != nil || seals&unix.F_SEAL_WRITE == 0 {
		return -1
	}
	return fdReaperExe
}

// forwarder forwards, from PID 1, every signal handed to sigs to every
// other process of the namespace (kill(-1)); on a marker on flush it first
// forwards what sigs holds (handed over before the marker), then leaves a
// token on flushed (buffered: the one waiting may not be there yet).
func forwarder(sigs, flush <-chan os.Signal, flushed chan<- struct{}) {
	for {
		select {
		case sig := <-sigs:
			_ = unix.Kill(-1, sig.(syscall.Signal))
		case <-flush:
			for drained := false; !drained; {
				select {
				case sig := <-sigs:
					_ = unix.Kill(-1, sig.(syscall.Signal))
				default:
					drained = true
				}
			}
			select {
			case flushed <- struct{}{}:
			default: // one is there already, unclaimed
			}
		}
	}
}

// handOver replaces the init with the reaper at descriptor reaper for the
// command pid main (see above). It returns only when it did not exec: the
// command has already exited (finishing in Go costs less than an exec), or
// a step failed; the init then goes on as before.
func handOver(reaper, main int, flushed <-chan struct{}) {
	if exited(main) {
		return
	}
	argv, err := syscall.SlicePtrFromStrings([]string{reaperArg0, strconv.Itoa(main)})
	if err != nil {
		return
	}
	envv := []*byte{nil}
	empty, err := syscall.BytePtrFromString("")
	if err != nil {
		return
	}
	set := uint64(forwardedMask)
	if err := blockHere(unix.SIG_BLOCK, set); err != nil {
		return
	}
	defer blockHere(unix.SIG_UNBLOCK, set) // only reached when no exec
	old, err := setForwarder(forwardedSignals)
	if err != nil {
		return
	}
	defer restoreHandlers(forwardedSignals, old)
	// flushed holds one token; one left by an earlier marker is not ours.
	select {
	case <-flushed:
	default:
	}
	if err := unix.Kill(unix.Getpid(), flushSignal); err != nil {
		return
	}
	select {
	case <-flushed:
	case <-time.After(time.Second):
		// Cannot happen short of a stalled runtime; never a stuck init.
		return
	}
	// The reaper writes the exit report on fdSync, close-on-exec since
	// the command's start.
	if _, err := unix.FcntlInt(fdSync, unix.F_SETFD, 0); err != nil {
		return
	}
	defer unix.FcntlInt(fdSync, unix.F_SETFD, unix.FD_CLOEXEC)
	if err := dropDACOverride(); err != nil {
		return
	}
	_, _, _ = unix.RawSyscall6(unix.SYS_EXECVEAT, uintptr(reaper), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	runtime.KeepAlive(argv)
	runtime.KeepAlive(envv)
	runtime.KeepAlive(empty)
	// Failed: the init carries on as before (its thread's DAC override is
	// for nothing it still does).
}

// exited reports whether process pid (a child) has exited, leaving it to
// be reaped.
func exited(pid int) bool {
	// siginfo_t as int32s: si_pid is the fifth on 64-bit machines.
	var info [32]int32
	err := unix.Waitid(unix.P_PID, pid, (*unix.Siginfo)(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	// WNOHANG with nothing to report leaves si_pid zero.
	return err != nil || info[4] != 0
}

// blockHere changes the calling thread's signal mask by how.
func blockHere(how int, set uint64) error {
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, uintptr(how), uintptr(unsafe.Pointer(&set)), 0, 8, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// dropDACOverride takes CAP_DAC_OVERRIDE out of this thread's effective
// set, so that it may not read the sealed reaper (reaperMode) and the
// exec leaves the reaper non-dumpable from its start.
func dropDACOverride() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[unix.CAP_DAC_OVERRIDE/32].Effective &^= 1 << (unix.CAP_DAC_OVERRIDE % 32)
	data[unix.CAP_DAC_READ_SEARCH/32].Effective &^= 1 << (unix.CAP_DAC_READ_SEARCH % 32)
	return unix.Capset(&hdr, &data[0])
}
