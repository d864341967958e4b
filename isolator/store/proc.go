package store

import (
	"fmt"
	"os"
	"strconv"
	"strings"
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

// Alive says whether p is still the process it was when identified.
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	if boot, err := bootID(); err != nil || boot != p.BootID {
		return false
	}
	ticks, err := startTicks(p.PID)
	return err == nil && ticks == p.StartTicks
}

// startTicks is when pid started, in clock ticks since boot (field 22 of
// /proc/<pid>/stat). The command name before it may hold spaces and
// parentheses, so fields are counted from the last ')'.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	const startField = 22 - 3 // the fields after ')' start at field 3
	if len(f) <= startField {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[startField], 10, 64)
}

func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
