package sandbox

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// initArg0 is argv[0] of a job's init; IsInit looks for it.
const initArg0 = "joblet-sandbox-init"

// memfdMinFd is the lowest descriptor number the sealed copy may use. The
// init is started by exec'ing /proc/self/fd/N, and exec.Cmd rearranges the
// child's first descriptors (0-2, the extra files, and as many again for
// shuffling) before the exec, so N must lie above all of them.
const memfdMinFd = 64

var self struct {
	once sync.Once
	path string
	err  error
}

// sealedSelf returns a path to a sealed in-memory copy of the running binary,
// made once. A job's init runs from it, so /proc/<init>/exe gives a job
// nothing it could write to reach the daemon's executable on disk (the class
// of runc's CVE-2019-5736).
func sealedSelf() (string, error) {
	self.once.Do(func() { self.path, self.err = copySelf() })
	return self.path, self.err
}

func copySelf() (string, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("open own executable: %w", err)
	}
	defer src.Close()
	// Already running from a sealed copy (a job's shim is started from the
	// isolator's): that copy serves again, so each shim costs no copy.
	if seals, err := unix.FcntlInt(src.Fd(), unix.F_GET_SEALS, 0); err == nil && seals&unix.F_SEAL_WRITE != 0 {
		high, err := unix.FcntlInt(src.Fd(), unix.F_DUPFD_CLOEXEC, memfdMinFd)
		if err != nil {
			return "", fmt.Errorf("move executable copy: %w", err)
		}
		return fmt.Sprintf("/proc/self/fd/%d", high), nil
	}
	fd, err := unix.MemfdCreate("joblet-sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "joblet-sandbox-init")
	defer mem.Close()
	if _, err := io.Copy(mem, src); err != nil {
		return "", fmt.Errorf("copy own executable: %w", err)
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return "", fmt.Errorf("seal executable copy: %w", err)
	}
	high, err := unix.FcntlInt(mem.Fd(), unix.F_DUPFD_CLOEXEC, memfdMinFd)
	if err != nil {
		return "", fmt.Errorf("move executable copy: %w", err)
	}
	// high stays open for the life of the process: every Start execs it.
	return fmt.Sprintf("/proc/self/fd/%d", high), nil
}

// Executable returns a path to the sealed in-memory copy of the running
// binary that jobs' inits run from (made once), for starting other helper
// processes of the same binary (a job's shim) without a copy of their own.
func Executable() (string, error) { return sealedSelf() }

// IsInit reports whether this process was started by Start as a job's
// init, or by the init as a job's exec stage (stage.go), or by CheckUserNS
// as its probe: main must then call Init.
func IsInit() bool {
	switch {
	case len(os.Args) == 1:
		return os.Args[0] == initArg0 || os.Args[0] == probeArg0
	case len(os.Args) >= 3:
		return os.Args[0] == execArg0
	}
	return false
}
