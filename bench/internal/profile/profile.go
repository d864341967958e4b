// Package profile records CPU profiles of the suite's services with
// `perf record` while a scenario runs, so the services need no profiling
// endpoint of their own. Read them with `perf report -i FILE`.
package profile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Recorder writes one perf.data file per scenario into Dir; a zero Dir
// records nothing.
type Recorder struct {
	Dir string
}

// Start begins sampling pids (call graphs by frame pointer, which Go keeps)
// into Dir/NAME.perf.data, and returns the function that stops it.
func (r Recorder) Start(name string, pids map[string]int) (stop func() error, err error) {
	if r.Dir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile dir: %w", err)
	}
	var list []string
	for _, pid := range pids {
		list = append(list, strconv.Itoa(pid))
	}
	sort.Strings(list)
	out := filepath.Join(r.Dir, name+".perf.data")
	log, err := os.Create(filepath.Join(r.Dir, name+".perf.log"))
	if err != nil {
		return nil, fmt.Errorf("profile log: %w", err)
	}
	cmd := exec.Command("perf", "record", "-e", "cpu-clock", "-F", "997", "-g", "-o", out, "-p", strings.Join(list, ","))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("perf record: %w", err)
	}
	// perf attaches asynchronously; give it a moment so the scenario's start is sampled.
	time.Sleep(300 * time.Millisecond)
	return func() error {
		defer log.Close()
		_ = cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		// perf ends by re-raising the SIGINT it was stopped with.
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("perf record %s: %w (see %s)", name, err, log.Name())
		}
		return nil
	}, nil
}
