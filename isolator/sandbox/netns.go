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

// startInNetns runs cmd.Start on a thread that is inside the network
// namespace pinned at path.
func startInNetns(cmd *exec.Cmd, path string) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer target.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(target.Fd()), &st); err != nil {
		return fmt.Errorf("stat network namespace: %w", err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s is not a namespace file", path)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Unlocked only once the thread is back in its own namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("join network namespace: %w", err)
			return
		}
		startErr := cmd.Start()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			done <- startErr
			return
		}
		runtime.UnlockOSThread()
		done <- startErr
	}()
	return <-done
}
