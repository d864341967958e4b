package app

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// pidFile is <dev>/state/supervisor/pids.json, {"service": pid}, rewritten
// on every (re)start so operators and tests can find the processes.
type pidFile struct {
	path string
	mu   sync.Mutex
	pids map[string]int
}

func newPidFile(path string) *pidFile { return &pidFile{path: path, pids: map[string]int{}} }

func (f *pidFile) set(service string, pid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pids[service] = pid
	b, err := json.MarshalIndent(f.pids, "", "  ")
	if err != nil {
		return fmt.Errorf("encode pids: %w", err)
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write pids: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("install pids: %w", err)
	}
	return nil
}

// remove deletes the file once nothing runs any more.
func (f *pidFile) remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.Remove(f.path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove pids: %w", err)
	}
	return nil
}
