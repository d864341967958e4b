//go:build !amd64

package sandbox

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// cloneVM reports whether cloneChild can start a CLONE_VM child: not
// here, where it has no assembly (and jobs do not start: seccomp_other.go).
const cloneVM = false

// cloneChild is clone(2) with flags and nothing else, for forkChild.
//
//go:nosplit
//go:norace
func cloneChild(flags uintptr) (pid uintptr, err syscall.Errno) {
	pid, _, err = syscall.RawSyscall6(unix.SYS_CLONE, flags, 0, 0, 0, 0, 0)
	return pid, err
}
