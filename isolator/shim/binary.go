package shim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

// Binary is the file name of the shim's own binary (a build of
// cmd/joblet-shim), installed beside the isolator's. It links only what a
// shim runs (package shimproc): a running job's shim holds a fifth of the
// resident memory of the isolator's binary in shim mode, for the job's
// whole life.
const Binary = "joblet-shim"

// binary is the sealed shim binary shims are exec'd from; nil: the sealed
// copy of the running binary (sandbox.Executable), whose main runs
// shimproc.Main when IsShim.
var (
	binaryMu   sync.Mutex
	binary     *os.File
	locateOnce sync.Once
	locateErr  error
)

// UseBinary makes shims run from a sealed copy, made now, of the shim
// binary at path, which must be safe as sandbox.SealBinary says. Without
// it, the first shim's start looks for Binary beside the running
// executable, and uses the running binary itself when it is not there.
func UseBinary(path string) error {
	f, err := sandbox.SealBinary(path, Binary)
	if err != nil {
		return fmt.Errorf("shim binary: %w", err)
	}
	binaryMu.Lock()
	defer binaryMu.Unlock()
	// A start that took the old one a moment ago may still be exec'ing it:
	// it stays open (a few MB, once per process).
	binary = f
	return nil
}

// executable returns the sealed executable a shim is started from.
func executable() (*os.File, error) {
	locateOnce.Do(func() { locateErr = locate() })
	if locateErr != nil {
		return nil, locateErr
	}
	binaryMu.Lock()
	f := binary
	binaryMu.Unlock()
	if f != nil {
		return f, nil
	}
	return sandbox.Executable()
}

// locate seals the shim binary installed beside the running executable
// (make build and the package put it there), unless UseBinary already set
// one. None there is no error: shims then run from the running binary. One
// that is there but unsafe (writable by others) is, for every shim's
// start: running it would run whatever another user put there as root.
func locate() error {
	binaryMu.Lock()
	set := binary != nil
	binaryMu.Unlock()
	if set {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil // the running binary's sealed copy needs no path
	}
	path := filepath.Join(filepath.Dir(exe), Binary)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return UseBinary(path)
}
