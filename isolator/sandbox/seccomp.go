package sandbox

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The default seccomp filter of a job's command: a denylist of system calls
// that reach beyond the job (the kernel, its modules, the clock, keys,
// mounts, other namespaces, tracing), answered with EPERM, never a kill, so
// that programs that probe for a feature carry on without it. The list is
// per architecture (seccomp_<arch>.go); a call made under another
// architecture's ABI (32-bit int 0x80 on x86_64, x32) is refused outright,
// since its numbers mean other calls.
//
// Two calls are filtered on their arguments: clone and unshare are refused
// with CLONE_NEWUSER (a new user namespace would give back every
// capability inside it). clone3 passes its flags in memory, which a filter
// cannot read, so it gets ENOSYS and libc falls back to clone, as under
// Docker.

// seccomp_data offsets (linux/seccomp.h).
const (
	offNr      = 0
	offArch    = 4
	offArg0Low = 16 // args[0], low 32 bits on a little-endian machine
)

// seccompFilter assembles the filter for arch (an AUDIT_ARCH value), the
// calls refused with EPERM, and the calls refused with ENOSYS.
func seccompFilter(arch uint32, eperm, enosys []uintptr, cloneNr, unshareNr uintptr) []unix.SockFilter {
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	// jeq jumps to the instruction after the next one when A == k: the next
	// one is the answer for a match.
	jeq := func(k uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: 0, Jf: 1}
	}
	const (
		ld       = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ret      = unix.BPF_RET | unix.BPF_K
		allow    = unix.SECCOMP_RET_ALLOW
		errEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		errNOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	f := []unix.SockFilter{
		stmt(ld, offArch),
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 1, Jf: 0},
		stmt(ret, errEPERM),
		stmt(ld, offNr),
		// x32 calls are x86_64 numbers with bit 30 set.
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: 0x40000000, Jt: 0, Jf: 1},
		stmt(ret, errEPERM),
	}
	for _, nr := range eperm {
		f = append(f, jeq(uint32(nr)), stmt(ret, errEPERM))
	}
	for _, nr := range enosys {
		f = append(f, jeq(uint32(nr)), stmt(ret, errNOSYS))
	}
	// clone(flags, ...) and unshare(flags): the flags are args[0] (on
	// x86_64 and arm64; other ABIs order clone's arguments differently).
	for _, nr := range []uintptr{cloneNr, unshareNr} {
		f = append(f,
			unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(nr), Jt: 0, Jf: 4},
			stmt(ld, offArg0Low),
			unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: unix.CLONE_NEWUSER, Jt: 0, Jf: 1},
			stmt(ret, errEPERM),
			stmt(ret, allow),
		)
	}
	return append(f, stmt(ret, allow))
}

// jobFilter returns the job's filter program for this architecture. The
// program points into a slice of its own, which stays reachable through it.
func jobFilter() (*unix.SockFprog, error) {
	if auditArch == 0 {
		return nil, errors.New("no filter for this architecture")
	}
	f := seccompFilter(auditArch, deniedCalls, enosysCalls, unix.SYS_CLONE, unix.SYS_UNSHARE)
	return &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}, nil
}

// installSeccomp installs the job's filter on the calling thread. It needs
// no_new_privs or CAP_SYS_ADMIN.
func installSeccomp() error {
	prog, err := jobFilter()
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(prog))); errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}
