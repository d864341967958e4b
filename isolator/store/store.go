// Package store persists the isolator's job records and its id counter under
// the isolator's state directory. Every write goes to a temporary file that is
// fsynced and renamed over the old one, so a crash leaves either the old or the
// new version, never a torn one.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/joblet-dev/joblet/proto/atomicfile"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Record is what is kept about one job: its public record and what the
// isolator needs to find the job's processes again after a restart.
type Record struct {
	Job *jobletv1.Job
	// Init identifies the job's init process on the host, zero once the job
	// has ended or before it started.
	Init Proc
	// Shim identifies the job's shim (its supervisor outside the isolator,
	// which a restarted isolator adopts), zero for a job without one.
	Shim Proc
}

// Proc names a process unambiguously: a pid alone can be reused, a pid with
// its start time (clock ticks since boot) and the boot id cannot.
type Proc struct {
	PID        int    `json:"pid,omitempty"`
	StartTicks uint64 `json:"startTicks,omitempty"`
	BootID     string `json:"bootId,omitempty"`
}

// file is the on-disk form of a Record.
type file struct {
	Job  json.RawMessage `json:"job"`
	Init Proc            `json:"init"`
	Shim Proc            `json:"shim,omitzero"`
}

// Store is the isolator's persisted state in one directory:
//
//	<dir>/last-id        the last job id handed out
//	<dir>/jobs/<id>.json one record per job
type Store struct {
	dir string

	mu     sync.Mutex // serialises id allocation
	lastID uint64
}

// Open opens (creating if needed) the store in dir. The id counter is read
// back and raised past any record found, so an id is never handed out twice
// even if the counter file was lost.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	s := &Store{dir: dir}
	b, err := os.ReadFile(s.counterPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read id counter: %w", err)
	default:
		if s.lastID, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return nil, fmt.Errorf("parse id counter %s: %w", s.counterPath(), err)
		}
	}
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		s.lastID = max(s.lastID, id)
	}
	return s, nil
}

func (s *Store) counterPath() string { return filepath.Join(s.dir, "last-id") }

func (s *Store) recordPath(id string) string {
	return filepath.Join(s.dir, "jobs", id+".json")
}

// NextID returns a new job id. The counter is on disk before the id is
// returned, so the id is never handed out again, even after a crash.
func (s *Store) NextID() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.lastID + 1
	if err := writeFile(s.counterPath(), []byte(strconv.FormatUint(next, 10)+"\n")); err != nil {
		return "", fmt.Errorf("persist id counter: %w", errdefs.NoSpace(err, "state", "the job id counter"))
	}
	s.lastID = next
	return strconv.FormatUint(next, 10), nil
}

// Save writes r, replacing the job's previous record.
func (s *Store) Save(r Record) error {
	id := r.Job.GetId()
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return fmt.Errorf("save job record: bad id %q", id)
	}
	j, err := protojson.Marshal(r.Job)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", id, err)
	}
	b, err := json.Marshal(file{Job: j, Init: r.Init, Shim: r.Shim})
	if err != nil {
		return fmt.Errorf("encode job %s: %w", id, err)
	}
	if err := writeFile(s.recordPath(id), b); err != nil {
		return fmt.Errorf("save job %s: %w", id, errdefs.NoSpace(err, "state", "job "+id+"'s record"))
	}
	return nil
}

// Load returns every record, in increasing id order.
func (s *Store) Load() ([]Record, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	recs := make([]Record, 0, len(ids))
	for _, id := range ids {
		name := s.recordPath(strconv.FormatUint(id, 10))
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read job record: %w", err)
		}
		var f file
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
		j := &jobletv1.Job{}
		if err := protojson.Unmarshal(f.Job, j); err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
		recs = append(recs, Record{Job: j, Init: f.Init, Shim: f.Shim})
	}
	return recs, nil
}

// ids lists the ids of the stored records, sorted. Anything else in the
// directory (such as a temporary file left by a crash) is ignored.
func (s *Store) ids() ([]uint64, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "jobs"))
	if err != nil {
		return nil, fmt.Errorf("list job records: %w", err)
	}
	var ids []uint64
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		id, err := strconv.ParseUint(base, 10, 64)
		if err != nil || strconv.FormatUint(id, 10) != base {
			continue
		}
		ids = append(ids, id)
	}
	// ReadDir sorts by name; ids of different lengths need numeric order.
	slices.Sort(ids)
	return ids, nil
}

// writeFile replaces path with b durably (see atomicfile).
func writeFile(path string, b []byte) error {
	return atomicfile.WriteFile(path, b, 0o600)
}
