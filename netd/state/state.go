// Package state persists netd's networks and address leases in one JSON
// file, replaced atomically (write, fsync, rename, fsync the directory), so
// a crash leaves either the old state or the new one.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/joblet-dev/joblet/proto/atomicfile"
	"github.com/joblet-dev/joblet/proto/errdefs"
)

// Version is the file format's version.
const Version = 1

// State is everything netd must remember across restarts.
type State struct {
	Version int `json:"version"`
	// BootID is the kernel's boot id when the state was saved: leases of
	// the "none" network have nothing in the kernel that shows whether
	// their job still runs, and end with the boot they were made in.
	BootID   string    `json:"bootId,omitempty"`
	Networks []Network `json:"networks"`
	Leases   []Lease   `json:"leases"`
}

// Network is a network with a bridge (none has no record).
type Network struct {
	Name    string `json:"name"`
	CIDR    string `json:"cidr"`
	Bridge  string `json:"bridge"`
	Builtin bool   `json:"builtin,omitempty"`
	Next    string `json:"next,omitempty"` // the address allocator's cursor
}

// Lease is one attached job.
type Lease struct {
	JobID   string `json:"jobId"`
	Network string `json:"network"`
	Name    string `json:"name,omitempty"`
	IP      string `json:"ip,omitempty"`   // empty for none
	Veth    string `json:"veth,omitempty"` // host end, empty for none
	// Netns is the file name of the job's namespace pin in netd's netns
	// directory when it is not the job id: a namespace netd made ahead of
	// the job (a bind mount cannot be renamed). Empty: the job id.
	Netns string `json:"netns,omitempty"`
}

// Store is the state file in a directory.
type Store struct{ dir string }

// Open returns the store in dir, creating dir (0700) if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path() string { return filepath.Join(s.dir, "state.json") }

// Load reads the saved state; no file yet is an empty state.
func (s *Store) Load() (State, error) {
	b, err := os.ReadFile(s.path())
	if errors.Is(err, os.ErrNotExist) {
		return State{Version: Version}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("read state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("parse state %s: %w", s.path(), err)
	}
	if st.Version != Version {
		return State{}, fmt.Errorf("state %s: version %d, want %d", s.path(), st.Version, Version)
	}
	return st, nil
}

// Save replaces the saved state with st.
func (s *Store) Save(st State) error {
	st.Version = Version
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := atomicfile.WriteFile(s.path(), b, 0o600); err != nil {
		return fmt.Errorf("save state: %w", errdefs.NoSpace(err, "state", "network state"))
	}
	return nil
}

// BootID is the running kernel's boot id (random at every boot).
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
