package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Identify returns who process pid is, so that a later isolator can tell
// it from another process that got the same pid.
func Identify(pid int) (Proc, error) {
	ticks, err := startTicks(pid)
	if err != nil {
		return Proc{}, err
	}
	boot, err := bootID()
	if err != nil {
		return Proc{}, err
	}
	return Proc{PID: pid, StartTicks: ticks, BootID: boot}, nil
}

// Alive says whether p is still the process it was when identified, and
// has not exited. A zombie has: it stays until its parent reaps it, which
// for an orphan (a shim whose isolator died with it) is whenever the
// host's init gets to it, and it must not pass for a running shim or job.
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	if boot, err := bootID(); err != nil || boot != p.BootID {
		return false
	}
	state, ticks, err := stat(p.PID)
	return err == nil && ticks == p.StartTicks && state != "Z" && state != "X"
}

// startTicks is when pid started, in clock ticks since boot.
func startTicks(pid int) (uint64, error) {
	_, ticks, err := stat(pid)
	return ticks, err
}

// stat reads pid's state (field 3 of /proc/<pid>/stat: "R", "S", "Z", ...)
// and when it started (field 22). Every job's start and every liveness
// check reads it, so it is read into a buffer on the stack: os.ReadFile,
// the string copy and strings.Fields cost ~1.7 KiB a call (5 of the 90 MiB
// the isolator allocated for 1000 jobs).
func stat(pid int) (state string, ticks uint64, err error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	// Field 22 ends within the first ~500 bytes whatever the command name
	// (at most 64 bytes) and the numbers before it; the rest is not needed.
	var buf [1024]byte
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", 0, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	state, ticks, ok := parseStat(buf[:n])
	if !ok {
		return "", 0, fmt.Errorf("parse %s", path)
	}
	return state, ticks, nil
}

// parseStat takes the state (field 3) and the start time (field 22) from a
// /proc/<pid>/stat line. The command name before them may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (state string, ticks uint64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	const stateField, startField = 3, 22
	field := stateField - 1 // the fields after ')' start at field 3
	rest := b[i+1:]
	for len(rest) > 0 {
		rest = bytes.TrimLeft(rest, " ")
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		f := bytes.TrimRight(rest[:end], "\n")
		rest = rest[end:]
		if len(f) == 0 {
			continue
		}
		field++
		switch field {
		case stateField:
			state = string(f[:1]) // one byte: no allocation
		case startField:
			t, err := strconv.ParseUint(string(f), 10, 64)
			if err != nil {
				return "", 0, false
			}
			return state, t, true
		}
	}
	return "", 0, false
}

// bootIDPath is the kernel's id of the current boot.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// theBootID is the boot id once read: it cannot change while this process
// runs, and every job's start and every check of a process read it.
var theBootID atomic.Pointer[string]

func bootID() (string, error) {
	if id := theBootID.Load(); id != nil {
		return *id, nil
	}
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err) // not kept: the next call reads again
	}
	id := strings.TrimSpace(string(b))
	theBootID.Store(&id)
	return id, nil
}
