//go:build !amd64

package sandbox

import (
	"errors"

	"golang.org/x/sys/unix"
)

// sigaction stands for the kernel's struct sigaction.
type sigaction struct{}

// setForwarder has no raw handler here (no assembly; jobs do not start
// either: seccomp_other.go): the init does not hand over.
func setForwarder([]unix.Signal) ([]sigaction, error) {
	return nil, errors.New("no handover on this architecture")
}

func restoreHandlers([]unix.Signal, []sigaction) {}
