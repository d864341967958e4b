package sandbox

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// runFilter runs the filter in a user-space BPF machine on a seccomp_data.
func runFilter(t *testing.T, f []unix.SockFilter, arch uint32, nr uintptr, arg0 uint64) uint32 {
	t.Helper()
	raw := make([]bpf.Instruction, len(f))
	for i, ins := range f {
		raw[i] = bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}.Disassemble()
	}
	vm, err := bpf.NewVM(raw)
	if err != nil {
		t.Fatalf("filter does not assemble: %v", err)
	}
	// struct seccomp_data. The kernel loads words in the machine's order,
	// the BPF machine in network order: each word is stored so that both
	// read the same value at the same offset (args[0]'s low half at 16, as
	// on a little-endian machine).
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], uint32(nr))
	binary.BigEndian.PutUint32(data[4:], arch)
	binary.BigEndian.PutUint32(data[16:], uint32(arg0))
	binary.BigEndian.PutUint32(data[20:], uint32(arg0>>32))
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

func TestSeccompFilter(t *testing.T) {
	const (
		arch    = 0xc000003e
		cloneNr = 56
		unshNr  = 272
		allow   = unix.SECCOMP_RET_ALLOW
		eperm   = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys  = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	f := seccompFilter(arch, []uintptr{165, 246}, []uintptr{435}, cloneNr, unshNr)
	tests := []struct {
		name string
		arch uint32
		nr   uintptr
		arg0 uint64
		want uint32
	}{
		{"allowed call", arch, 39, 0, allow},
		{"denied call", arch, 165, 0, eperm},
		{"second denied call", arch, 246, 0, eperm},
		{"clone3", arch, 435, 0, enosys},
		{"foreign architecture", 0x40000003, 39, 0, eperm},
		{"x32 call", arch, 0x40000000 | 39, 0, eperm},
		{"fork-like clone", arch, cloneNr, uint64(unix.SIGCHLD) | unix.CLONE_VM, allow},
		{"thread clone", arch, cloneNr, unix.CLONE_THREAD | unix.CLONE_VM | unix.CLONE_SIGHAND, allow},
		{"clone with a new user namespace", arch, cloneNr, unix.CLONE_NEWUSER | uint64(unix.SIGCHLD), eperm},
		// flags equal to unshare's number must not confuse the clone check
		{"clone with odd flags", arch, cloneNr, unshNr, allow},
		{"unshare of a mount namespace", arch, unshNr, unix.CLONE_NEWNS, allow},
		{"unshare of a user namespace", arch, unshNr, unix.CLONE_NEWUSER | unix.CLONE_NEWNS, eperm},
		{"high bits of the flags are ignored", arch, unshNr, 1 << 40, allow},
	}
	for _, tt := range tests {
		if got := runFilter(t, f, tt.arch, tt.nr, tt.arg0); got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

func TestDeniedCallsCoverTheDangerousOnes(t *testing.T) {
	if auditArch == 0 {
		t.Skip("no filter for this architecture")
	}
	denied := map[uintptr]bool{}
	for _, nr := range deniedCalls {
		denied[nr] = true
	}
	for name, nr := range map[string]uintptr{
		"kexec_load": unix.SYS_KEXEC_LOAD, "init_module": unix.SYS_INIT_MODULE,
		"mount": unix.SYS_MOUNT, "keyctl": unix.SYS_KEYCTL, "bpf": unix.SYS_BPF,
		"ptrace": unix.SYS_PTRACE, "setns": unix.SYS_SETNS, "open_by_handle_at": unix.SYS_OPEN_BY_HANDLE_AT,
	} {
		if !denied[nr] {
			t.Errorf("%s is not denied", name)
		}
	}
	for _, nr := range []uintptr{unix.SYS_READ, unix.SYS_EXECVE, unix.SYS_CLONE, unix.SYS_UNSHARE, unix.SYS_CHROOT} {
		if denied[nr] {
			t.Errorf("system call %d is denied outright; programs need it", nr)
		}
	}
}

func TestCapMask(t *testing.T) {
	// CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
	// NET_BIND_SERVICE SYS_CHROOT AUDIT_WRITE SETFCAP
	if got, want := capMask(), [2]uint32{0xa00405fb, 0}; got != want {
		t.Errorf("capMask() = %#x, want %#x", got, want)
	}
}
