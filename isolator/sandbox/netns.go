package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// A job on a network prepared by netd starts inside that network namespace
// (Spec.NetnsPath) instead of a fresh one. The namespace is joined by the
// parent, not by the init:
//
//   - setns(CLONE_NEWNET) changes only the calling thread. The init is a Go
//     program with several threads by the time its main runs, so an init
//     that joined the namespace itself would keep threads in the host's
//     namespace for its whole life, reachable by a job process through
//     /proc/1/task/<tid>/ns/net.
//   - A process created by clone without CLONE_NEWNET gets the network
//     namespace of the thread that called clone. So startInNetns locks a
//     dedicated goroutine to its thread, joins the job's namespace on it,
//     starts the init (Go forks on the calling thread), and joins the
//     original namespace again. Every thread of the init, and the init's
//     new PID, mount, UTS and IPC namespaces, are then born in the job's
//     network namespace from the first instruction.
//   - If the thread cannot be put back, the goroutine returns still locked
//     and the Go runtime ends that thread instead of reusing it.
//
// An init cloned ahead of its job (Prefork) is in a fresh network namespace
// of its own; at its gate it is passed netd's namespace (sync.go) and joins
// it on its locked thread, from which it builds the job's root and forks
// the command. Its other threads stay in the namespace it was cloned with,
// which holds loopback only, nothing of the host's, and is the job's alone.

// startInNetns runs cmd.Start on a thread that is inside the network
// namespace pinned at path.
func startInNetns(cmd *exec.Cmd, path string) error {
	target, err := openNetns(path)
	if err != nil {
		return err
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() { done <- startInNetnsHere(cmd, target) }()
	return <-done
}

// startInNetnsHere runs cmd.Start from the calling goroutine's thread,
// inside the network namespace target, and puts the thread back. If it
// cannot be put back, the goroutine stays locked to it: the thread ends
// with the goroutine. The caller runs it on a goroutine of its own.
func startInNetnsHere(cmd *exec.Cmd, target *os.File) error {
	runtime.LockOSThread()
	// Unlocked only once the thread is back in its own namespace.
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("join network namespace: %w", err)
	}
	startErr := cmd.Start()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return startErr
	}
	runtime.UnlockOSThread()
	return startErr
}

// openNetns opens the network namespace pinned at path.
func openNetns(path string) (*os.File, error) {
	target, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(target.Fd()), &st); err != nil {
		target.Close()
		return nil, fmt.Errorf("stat network namespace: %w", err)
	}
	if st.Type != unix.NSFS_MAGIC {
		target.Close()
		return nil, fmt.Errorf("%s is not a namespace file", path)
	}
	return target, nil
}
