// Command probe tries system calls a job must not make and prints, one a
// line, the call's name and "ok" or the errno it got. The sandbox tests run
// it inside jobs. Every argument is harmless, or invalid, so that a call the
// filter fails to refuse does nothing to the host either.
package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// call is one probed system call.
type call struct {
	name string
	nr   uintptr
	args [6]uintptr
}

func main() {
	pid := uintptr(os.Getpid())
	calls := []call{
		{"kexec_load", unix.SYS_KEXEC_LOAD, [6]uintptr{}},
		{"kexec_file_load", unix.SYS_KEXEC_FILE_LOAD, [6]uintptr{^uintptr(0), ^uintptr(0)}},
		{"init_module", unix.SYS_INIT_MODULE, [6]uintptr{}},
		{"finit_module", unix.SYS_FINIT_MODULE, [6]uintptr{^uintptr(0)}},
		{"delete_module", unix.SYS_DELETE_MODULE, [6]uintptr{}},
		{"mount", unix.SYS_MOUNT, [6]uintptr{}},
		{"umount2", unix.SYS_UMOUNT2, [6]uintptr{}},
		{"pivot_root", unix.SYS_PIVOT_ROOT, [6]uintptr{}},
		{"fsopen", unix.SYS_FSOPEN, [6]uintptr{}},
		{"open_tree", unix.SYS_OPEN_TREE, [6]uintptr{^uintptr(0)}},
		{"swapon", unix.SYS_SWAPON, [6]uintptr{}},
		{"swapoff", unix.SYS_SWAPOFF, [6]uintptr{}},
		{"reboot", unix.SYS_REBOOT, [6]uintptr{}},
		{"keyctl", unix.SYS_KEYCTL, [6]uintptr{unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd)}},
		{"add_key", unix.SYS_ADD_KEY, [6]uintptr{}},
		{"request_key", unix.SYS_REQUEST_KEY, [6]uintptr{}},
		{"bpf", unix.SYS_BPF, [6]uintptr{}},
		{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, [6]uintptr{}},
		{"userfaultfd", unix.SYS_USERFAULTFD, [6]uintptr{^uintptr(0)}},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, [6]uintptr{}},
		{"ptrace", unix.SYS_PTRACE, [6]uintptr{unix.PTRACE_PEEKDATA, 1}},
		{"process_vm_readv", unix.SYS_PROCESS_VM_READV, [6]uintptr{pid}},
		{"kcmp", unix.SYS_KCMP, [6]uintptr{pid, pid, 0}},
		{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, [6]uintptr{^uintptr(0)}},
		{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, [6]uintptr{^uintptr(0)}},
		{"setns", unix.SYS_SETNS, [6]uintptr{^uintptr(0)}},
		{"iopl", unix.SYS_IOPL, [6]uintptr{}},
		{"ioperm", unix.SYS_IOPERM, [6]uintptr{}},
		{"acct", unix.SYS_ACCT, [6]uintptr{}},
		{"settimeofday", unix.SYS_SETTIMEOFDAY, [6]uintptr{}},
		{"clock_settime", unix.SYS_CLOCK_SETTIME, [6]uintptr{}},
		{"clock_adjtime", unix.SYS_CLOCK_ADJTIME, [6]uintptr{}},
		{"adjtimex", unix.SYS_ADJTIMEX, [6]uintptr{}},
		{"syslog", unix.SYS_SYSLOG, [6]uintptr{}},
		{"quotactl", unix.SYS_QUOTACTL, [6]uintptr{}},
		{"clone3", unix.SYS_CLONE3, [6]uintptr{}},
		// getpid through the x32 ABI: the x86_64 number with bit 30 set.
		{"x32_getpid", 0x40000000 | unix.SYS_GETPID, [6]uintptr{}},
		// A control: getpid must work.
		{"getpid", unix.SYS_GETPID, [6]uintptr{}},
	}
	for _, c := range calls {
		_, _, errno := unix.Syscall6(c.nr, c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5])
		fmt.Println(c.name, result(errno))
	}
	// Writing the daemon's executable through the init (CVE-2019-5736).
	f, err := os.OpenFile("/proc/1/exe", os.O_WRONLY, 0)
	fmt.Println("open_init_exe_write", openResult(f, err))
	// Reading the init's memory.
	f, err = os.Open("/proc/1/mem")
	fmt.Println("open_init_mem", openResult(f, err))
}

func result(errno unix.Errno) string {
	if errno == 0 {
		return "ok"
	}
	return unix.ErrnoName(errno)
}

func openResult(f *os.File, err error) string {
	if err == nil {
		f.Close()
		return "ok"
	}
	var errno unix.Errno
	if e, ok := err.(*os.PathError); ok {
		if en, ok := e.Err.(unix.Errno); ok {
			errno = en
		}
	}
	if errno == 0 {
		return err.Error()
	}
	return unix.ErrnoName(errno)
}
