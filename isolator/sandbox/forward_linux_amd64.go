package sandbox

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// forwardSignal and forwardReturn are the handover's raw signal handler
// and its sa_restorer (forward_linux_amd64.s); never called from Go.
func forwardSignal()
func forwardReturn()

// forwarderPCs returns forwardSignal's and forwardReturn's addresses.
func forwarderPCs() (handler, restorer uintptr)

// sigaction is the kernel's struct sigaction on amd64.
type sigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// Flags of sigaction not in x/sys/unix.
const (
	saOnstack  = 0x08000000
	saRestart  = 0x10000000
	saRestorer = 0x04000000
)

// setForwarder makes forwardSignal the handler of every signal in set, and
// returns the handlers it replaced (for restoreHandlers). It runs on the
// thread's alternate signal stack, which the Go runtime gives every thread,
// since a goroutine's stack may not hold a signal frame.
func setForwarder(set []unix.Signal) ([]sigaction, error) {
	handler, restorer := forwarderPCs()
	act := sigaction{handler: handler, flags: saOnstack | saRestart | saRestorer, restorer: restorer, mask: forwardedMask}
	old := make([]sigaction, len(set))
	for i, sig := range set {
		_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), uintptr(unsafe.Pointer(&old[i])), 8, 0, 0)
		if e != 0 {
			restoreHandlers(set[:i], old)
			return nil, e
		}
	}
	return old, nil
}

// restoreHandlers gives the signals in set back the handlers old.
func restoreHandlers(set []unix.Signal, old []sigaction) {
	for i, sig := range set {
		_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&old[i])), 0, 8, 0, 0)
	}
}
