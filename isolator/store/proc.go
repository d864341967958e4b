package store

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
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
// and when it started (field 22). The command name before them may hold
// spaces and parentheses, so fields are counted from the last ')'.
func stat(pid int) (state string, ticks uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	const startField = 22 - 3 // the fields after ')' start at field 3
	if len(f) <= startField {
		return "", 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	ticks, err = strconv.ParseUint(f[startField], 10, 64)
	return f[0], ticks, err
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
