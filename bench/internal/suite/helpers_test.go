package suite

import (
	"syscall"
	"time"
)

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

func sleepBriefly() { time.Sleep(20 * time.Millisecond) }
