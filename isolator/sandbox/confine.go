package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The job's command gets only a small set of capabilities, no way to gain
// more, and a seccomp filter (seccomp.go). Capabilities and no_new_privs
// belong to a thread, not a process: the init's main goroutine is locked to
// its thread (Init), confines that thread, and forks the command from it,
// so the command inherits exactly that state; the forked child confines
// itself again (a new user namespace starts with every capability) and adds
// the seccomp filter before its execve (stage.go, rawexec_linux.go). With a
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

// capPlan is the capability confinement as system call arguments, worked
// out ahead so that a forked child can apply it without allocating
// (rawexec_linux.go).
type capPlan struct {
	drop []uintptr // capabilities to drop from the bounding set
	hdr  unix.CapUserHeader
	data [2]unix.CapUserData // permitted, effective and inheritable
}

// jobCaps returns the job's capPlan for the running kernel, worked out once.
var jobCaps = sync.OnceValues(func() (*capPlan, error) {
	last, err := lastCap()
	if err != nil {
		return nil, setupErr("read the last capability", err)
	}
	allowed := capMask()
	p := &capPlan{hdr: unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}}
	for c := uintptr(0); c <= last; c++ {
		if allowed[c/32]&(1<<(c%32)) == 0 {
			p.drop = append(p.drop, c)
		}
	}
	for i := range p.data {
		p.data[i] = unix.CapUserData{Effective: allowed[i], Permitted: allowed[i], Inheritable: allowed[i]}
	}
	return p, nil
})

// Steps of the confinement, as errors name them.
const (
	stepDropBound  = "drop capability %d from the bounding set"
	stepCapset     = "set capabilities"
	stepAmbient    = "clear ambient capabilities"
	stepNoNewPrivs = "set no_new_privs"
)

// confineThread gives the calling thread, and so every process it starts
// from now on, the job's capabilities and no_new_privs. The thread keeps
// CAP_SETUID and CAP_SETGID, with which it writes the maps of the command's
// user namespace.
func confineThread() error {
	p, err := jobCaps()
	if err != nil {
		return err
	}
	for _, c := range p.drop {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return setupErr(fmt.Sprintf(stepDropBound, c), err)
		}
	}
	hdr, data := p.hdr, p.data
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return setupErr(stepCapset, err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return setupErr(stepAmbient, err)
	}
	// Neither setuid binaries nor file capabilities can give more back, and
	// it is what allows the command's unprivileged seccomp filter.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return setupErr(stepNoNewPrivs, err)
	}
	return nil
}
