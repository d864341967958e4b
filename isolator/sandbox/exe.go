package sandbox

import (
	"errors"
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

// InitBinary is the file name of the job init's own binary (a build of
// cmd/joblet-sandbox-init), installed beside the isolator's.
const InitBinary = "joblet-sandbox-init"

// sealed is a sealed in-memory executable kept open for the life of the
// process: every start execs it through path.
type sealed struct {
	once sync.Once
	path string
	file *os.File
	err  error
}

// self is the sealed copy of the running binary (the isolator's shims run
// from it); initExe, once set by UseInitBinary or InheritInit, the sealed
// init binary that jobs' inits and exec stages run from instead.
var (
	self    sealed
	initMu  sync.Mutex
	initExe *sealed
)

// sealedSelf returns a path to a sealed in-memory copy of the running binary,
// made once. A job's init runs from it, so /proc/<init>/exe gives a job
// nothing it could write to reach the daemon's executable on disk (the class
// of runc's CVE-2019-5736).
func sealedSelf() (string, error) {
	self.once.Do(func() { self.path, self.file, self.err = copySelf() })
	return self.path, self.err
}

// sealedInit returns the path that jobs' inits are exec'd from: the sealed
// init binary when there is one, else the sealed copy of the running
// binary (which then serves as init too: its main calls Init).
func sealedInit() (string, error) {
	initMu.Lock()
	s := initExe
	initMu.Unlock()
	if s != nil {
		return s.path, nil
	}
	return sealedSelf()
}

func copySelf() (string, *os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", nil, fmt.Errorf("open own executable: %w", err)
	}
	defer src.Close()
	// Already running from a sealed copy (a job's shim is started from the
	// isolator's): that copy serves again, so each shim costs no copy.
	if isSealed(src) {
		return keep(src)
	}
	return sealCopy(src, "joblet-sandbox-init")
}

// isSealed reports whether f is a memfd that can no longer be written.
func isSealed(f *os.File) bool {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	return err == nil && seals&unix.F_SEAL_WRITE != 0
}

// sealCopy copies src into a new memfd called name, seals it and keeps it.
func sealCopy(src io.Reader, name string) (string, *os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", nil, fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), name)
	defer mem.Close()
	if _, err := io.Copy(mem, src); err != nil {
		return "", nil, fmt.Errorf("copy executable %s: %w", name, err)
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return "", nil, fmt.Errorf("seal executable copy: %w", err)
	}
	return keep(mem)
}

// keep duplicates f to a descriptor at or above memfdMinFd that stays open
// for the life of the process, and returns the path that execs it.
func keep(f *os.File) (string, *os.File, error) {
	high, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, memfdMinFd)
	if err != nil {
		return "", nil, fmt.Errorf("move executable copy: %w", err)
	}
	return fmt.Sprintf("/proc/self/fd/%d", high), os.NewFile(uintptr(high), f.Name()), nil
}

// UseInitBinary makes jobs' inits and exec stages run from a sealed copy,
// made now, of the init binary at path instead of from the running binary.
// That binary links only this package: it starts in about a third of the
// time of the isolator's and maps a sixth of its size, twice per job (the
// init, which stays for the job's life, and the exec stage). The file
// must be a regular file owned by root and writable by no one else, as the
// daemon's own executable is: whoever can write it runs code as root.
func UseInitBinary(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("init binary: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("init binary %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("init binary %s: not a regular file", path)
	case st.Uid != 0:
		return fmt.Errorf("init binary %s: owned by uid %d, not root", path, st.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("init binary %s: writable by group or others (mode %#o)", path, st.Mode&0o777)
	}
	p, kept, err := sealCopy(f, "joblet-init")
	if err != nil {
		return fmt.Errorf("init binary %s: %w", path, err)
	}
	setInit(&sealed{path: p, file: kept})
	return nil
}

// InitFile is the sealed init binary set by UseInitBinary or InheritInit,
// nil when jobs' inits run from the running binary. A process that starts
// jobs' inits for this one (a shim) inherits it and calls InheritInit.
func InitFile() *os.File {
	initMu.Lock()
	defer initMu.Unlock()
	if initExe == nil {
		return nil
	}
	return initExe.file
}

// InheritInit makes jobs' inits run from f, a sealed init binary inherited
// from the process that started this one (its InitFile). f is moved out of
// the low descriptors and closed on exec, so no job inherits it.
func InheritInit(f *os.File) error {
	defer f.Close()
	if !isSealed(f) {
		return errors.New("inherited init binary is not a sealed memfd")
	}
	p, kept, err := keep(f)
	if err != nil {
		return err
	}
	setInit(&sealed{path: p, file: kept})
	return nil
}

func setInit(s *sealed) {
	initMu.Lock()
	defer initMu.Unlock()
	// A start that read the old path a moment ago may still be exec'ing
	// it; the old copy stays open (a few MB, once per process) for that.
	initExe = s
}

// Executable returns a path to the sealed in-memory copy of the running
// binary (made once), for starting other helper processes of the same
// binary (a job's shim) without a copy of their own.
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
