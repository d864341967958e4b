package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The job's command gets only a small set of capabilities, no way to gain
// more, and a seccomp filter (seccomp.go). Capabilities and no_new_privs
// belong to a thread, not a process: the init's main goroutine is locked to
// its thread (Init), confines that thread, and starts the command's exec
// stage from it (Go forks on the calling thread), so the command inherits
// exactly that state; the stage adds the seccomp filter (stage.go). With a
// user namespace the capabilities are the job's in its own user namespace
// only (userns.go). The init's other threads keep what they had; the init
// itself is made non-dumpable so that the job cannot reach it through
// /proc/1 (mem, environ, exe, fd).

// allowedCaps is the bounding, permitted, effective and inheritable set of a
// job's command: Docker's default set without NET_RAW and MKNOD. None of
// them reaches beyond the job's own namespaces and files.
var allowedCaps = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_KILL, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP,
	unix.CAP_NET_BIND_SERVICE, unix.CAP_SYS_CHROOT, unix.CAP_AUDIT_WRITE,
	unix.CAP_SETFCAP,
}

// capMask is allowedCaps as the two 32-bit words of capset(2).
func capMask() [2]uint32 {
	var m [2]uint32
	for _, c := range allowedCaps {
		m[c/32] |= 1 << (c % 32)
	}
	return m
}

// lastCap is the highest capability the running kernel knows.
func lastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("cap_last_cap: %w", err)
	}
	return uintptr(n), nil
}

// confineThread gives the calling thread, and so every process it starts
// from now on, the job's capabilities and no_new_privs. The thread keeps
// CAP_SETUID and CAP_SETGID, with which it writes the maps of the command's
// user namespace.
func confineThread() error {
	last, err := lastCap()
	if err != nil {
		return setupErr("read the last capability", err)
	}
	allowed := capMask()
	for c := uintptr(0); c <= last; c++ {
		if allowed[c/32]&(1<<(c%32)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return setupErr(fmt.Sprintf("drop capability %d from the bounding set", c), err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		data[i] = unix.CapUserData{Effective: allowed[i], Permitted: allowed[i], Inheritable: allowed[i]}
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return setupErr("set capabilities", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return setupErr("clear ambient capabilities", err)
	}
	// Neither setuid binaries nor file capabilities can give more back, and
	// it is what allows the exec stage's unprivileged seccomp filter.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return setupErr("set no_new_privs", err)
	}
	return nil
}
