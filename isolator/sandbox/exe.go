package sandbox

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// initArg0 is argv[0] of a job's init; IsInit looks for it.
const initArg0 = "joblet-sandbox-init"

// memfdMinFd is the lowest descriptor number a sealed copy is kept at, out
// of the way of the descriptors a child is given (0-2 and a few more).
const memfdMinFd = 64

// A sealed copy is exec'd through /proc/self/fd/N, and between fork and
// exec Go moves its error pipe, and any passed descriptor numbered below
// its place, to the descriptors just above the highest one passed to the
// child. Were N above them all, it could be overwritten there, and the
// child would exec a pipe (EACCES; seen under load, once the isolator had
// some 64 descriptors open). So the copy's own descriptor is always passed
// to the child too (WithExe): N is then among those passed, nothing is
// moved onto it, and the new program closes its inherited copy first
// thing.

// InitBinary is the file name of the job init's own binary (a build of
// cmd/joblet-sandbox-init), installed beside the isolator's.
const InitBinary = "joblet-sandbox-init"

// sealed is a sealed in-memory executable kept open for the life of the
// process: every start execs it.
type sealed struct {
	once sync.Once
	file *os.File
	err  error
}

// self is the sealed copy of the running binary (the isolator's shims run
// from it); initExe, once set by UseInitBinary or InheritInit, the sealed
// init binary that jobs' inits run from instead; reaperExe, once set by
// UseReaperBinary or InheritReaper, the sealed reaper that each init hands
// over to once its command runs (handover.go).
var (
	self      sealed
	initMu    sync.Mutex
	initExe   *os.File
	reaperExe *os.File
)

// sealedSelf returns a sealed in-memory copy of the running binary, made
// once. A job's init runs from it (or from the sealed init binary), so
// /proc/<init>/exe gives a job nothing it could write to reach a daemon's
// executable on disk (the class of runc's CVE-2019-5736).
func sealedSelf() (*os.File, error) {
	self.once.Do(func() { self.file, self.err = copySelf() })
	return self.file, self.err
}

// sealedInit returns what jobs' inits are exec'd from: the sealed init
// binary when there is one, else the sealed copy of the running binary
// (which then serves as init too: its main calls Init).
func sealedInit() (*os.File, error) {
	initMu.Lock()
	f := initExe
	initMu.Unlock()
	if f != nil {
		return f, nil
	}
	return sealedSelf()
}

// ExecPath is the path that execs the sealed executable exe in a child
// that is given exe among its files (see WithExe).
func ExecPath(exe *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", exe.Fd()) }

// WithExe returns a child's files with exe, the sealed executable it is to
// exec, added at the end: see above for why. The child finds it at
// descriptor len(files) and closes it (CloseInheritedExe).
func WithExe(files []*os.File, exe *os.File) []*os.File {
	return append(slices.Clip(files), exe)
}

// CloseInheritedExe closes descriptor fd, a program's inherited copy of its
// own sealed executable (WithExe), checking first that it is one.
func CloseInheritedExe(fd int) {
	if target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil && strings.HasPrefix(target, "/memfd:") {
		unix.Close(fd)
	}
}

func copySelf() (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open own executable: %w", err)
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

// sealCopy copies src into a new memfd called name, seals it and keeps it
// through a read-only descriptor of its own.
func sealCopy(src io.Reader, name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), name)
	defer mem.Close()
	if _, err := io.Copy(mem, src); err != nil {
		return nil, fmt.Errorf("copy executable %s: %w", name, err)
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return nil, fmt.Errorf("seal executable copy: %w", err)
	}
	ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", mem.Fd()), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen executable copy: %w", err)
	}
	defer ro.Close()
	return keep(ro)
}

// keep duplicates f to a descriptor at or above memfdMinFd that stays open
// for the life of the process.
func keep(f *os.File) (*os.File, error) {
	high, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, memfdMinFd)
	if err != nil {
		return nil, fmt.Errorf("move executable copy: %w", err)
	}
	return os.NewFile(uintptr(high), f.Name()), nil
}

// UseInitBinary makes jobs' inits run from a sealed copy,
// made now, of the init binary at path instead of from the running binary.
// That binary links only this package: it starts in about a third of the
// time of the isolator's and maps a sixth of its size, once per job (the
// init, which stays for the job's life). The file
// must be safe as SealBinary says.
func UseInitBinary(path string) error {
	kept, err := SealBinary(path, "joblet-init")
	if err != nil {
		return fmt.Errorf("init binary: %w", err)
	}
	setInit(kept)
	return nil
}

// SealBinary returns a sealed in-memory copy, called name, of the helper
// binary at path (the job's init, or the job's shim), kept open for the
// life of the process. The file must be a regular file owned by root and
// writable by no one else, as the daemon's own executable is: whoever can
// write it runs code as root.
func SealBinary(path, name string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("%s: not a regular file", path)
	case st.Uid != 0:
		return nil, fmt.Errorf("%s: owned by uid %d, not root", path, st.Uid)
	case st.Mode&0o022 != 0:
		return nil, fmt.Errorf("%s: writable by group or others (mode %#o)", path, st.Mode&0o777)
	}
	kept, err := sealCopy(f, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kept, nil
}

// InitFile is the sealed init binary set by UseInitBinary or InheritInit,
// nil when jobs' inits run from the running binary. A process that starts
// jobs' inits for this one (a shim) inherits it and calls InheritInit.
func InitFile() *os.File {
	initMu.Lock()
	defer initMu.Unlock()
	return initExe
}

// InheritInit makes jobs' inits run from f, a sealed init binary inherited
// from the process that started this one (its InitFile). f is moved out of
// the low descriptors and closed on exec, so no job inherits it.
func InheritInit(f *os.File) error { return inheritSealed(f, "init", setInit) }

// inheritSealed checks that f, an inherited binary (what names it), is a
// sealed memfd, moves it out of the low descriptors, close-on-exec, hands
// the copy to set and closes f.
func inheritSealed(f *os.File, what string, set func(*os.File)) error {
	defer f.Close()
	if !isSealed(f) {
		return fmt.Errorf("inherited %s binary is not a sealed memfd", what)
	}
	kept, err := keep(f)
	if err != nil {
		return err
	}
	set(kept)
	return nil
}

// ReaperBinary is the file name of the job's PID 1 once its command runs (a
// build of sandbox/reaper/reaper.c), installed beside the init's binary.
const ReaperBinary = "joblet-sandbox-reaper"

// reaperMode is the sealed reaper's mode: executable, readable by nobody.
// An exec of a file its caller may not read leaves the new process
// non-dumpable from its first instruction (the kernel's would_dump), and
// the init drops its CAP_DAC_OVERRIDE before that exec (handover.go):
// the reaper then never is, even for the instant before its own
// PR_SET_DUMPABLE, a process a job's root could ptrace or open /proc files
// of.
const reaperMode = 0o100

// UseReaperBinary makes jobs' inits hand over to a sealed copy, made now,
// of the reaper binary at path once their command runs (see handover.go).
// The file must be safe as SealBinary says. Without it, inits stay for
// their job's life, as Go programs (a few MB more per running job).
func UseReaperBinary(path string) error {
	kept, err := SealBinary(path, "joblet-reaper")
	if err != nil {
		return fmt.Errorf("reaper binary: %w", err)
	}
	if err := unix.Fchmod(int(kept.Fd()), reaperMode); err != nil {
		kept.Close()
		return fmt.Errorf("reaper binary: %w", err)
	}
	setReaper(kept)
	return nil
}

// ReaperFile is the sealed reaper set by UseReaperBinary or InheritReaper,
// nil when there is none. A process that starts jobs' inits for this one
// (a shim) inherits it and calls InheritReaper.
func ReaperFile() *os.File {
	initMu.Lock()
	defer initMu.Unlock()
	return reaperExe
}

// InheritReaper makes jobs' inits hand over to f, a sealed reaper binary
// inherited from the process that started this one (its ReaperFile). f is
// moved out of the low descriptors and closed on exec, so no job inherits
// it.
func InheritReaper(f *os.File) error { return inheritSealed(f, "reaper", setReaper) }

// DropReaper undoes UseReaperBinary and InheritReaper: inits started from
// now on stay for their job's life. The old copy stays open, as in
// setInit.
func DropReaper() { setReaper(nil) }

func setReaper(f *os.File) {
	initMu.Lock()
	defer initMu.Unlock()
	// As in setInit: a start may still be passing the old one on.
	reaperExe = f
}

func setInit(f *os.File) {
	initMu.Lock()
	defer initMu.Unlock()
	// A start that read the old path a moment ago may still be exec'ing
	// it; the old copy stays open (a few MB, once per process) for that.
	initExe = f
}

// Executable returns the sealed in-memory copy of the running binary (made
// once), for starting other helper processes of the same binary (a job's
// shim) without a copy of their own: exec ExecPath of it, with it among
// the child's files (WithExe).
func Executable() (*os.File, error) { return sealedSelf() }

// IsInit reports whether this process was started by Start as a job's
// init, or by CheckUserNS as its probe: main must then call Init.
func IsInit() bool {
	return len(os.Args) == 1 && (os.Args[0] == initArg0 || os.Args[0] == probeArg0)
}
