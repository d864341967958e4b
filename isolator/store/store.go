// Package store persists the isolator's job records and its id counter under
// the isolator's state directory. Every write goes to a temporary file that is
// renamed over the old one, so a crash leaves either the old or the new
// version, never a torn one. Save and the id counter wait for the disk
// (fsync of the file and of its directory), so a machine crash cannot lose
// them either; Update does not (see there).
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
//	<dir>/last-id        no job id up to it may be handed out again
//	<dir>/jobs/<id>.json one record per job
type Store struct {
	dir string

	mu       sync.Mutex // serialises id allocation
	lastID   uint64     // the last id handed out
	reserved uint64     // the counter on disk: NextID hands out ids up to it without a write
}

// idBlock is how many ids one durable write of the counter reserves: the
// counter is a step ahead of the ids handed out, so most jobs start without
// waiting for the disk. A crash skips the rest of the block (ids are never
// reused, and need not be consecutive); Close writes the exact counter.
const idBlock = 64

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
	s.reserved = s.lastID
	return s, nil
}

func (s *Store) counterPath() string { return filepath.Join(s.dir, "last-id") }

func (s *Store) recordPath(id string) string {
	return filepath.Join(s.dir, "jobs", id+".json")
}

// NextID returns a new job id. The counter on disk is at or past the id
// before it is returned (a block of idBlock ids is reserved at a time), so
// the id is never handed out again, even after a crash.
func (s *Store) NextID() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.lastID + 1
	if next > s.reserved {
		ceiling := next + idBlock - 1
		if err := s.writeCounter(ceiling); err != nil {
			return "", err
		}
		s.reserved = ceiling
	}
	s.lastID = next
	return strconv.FormatUint(next, 10), nil
}

// Close writes the last id handed out as the counter, so that the next
// Store goes on right after it instead of after the reserved block. The
// Store stays usable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserved == s.lastID {
		return nil
	}
	if err := s.writeCounter(s.lastID); err != nil {
		return err
	}
	s.reserved = s.lastID
	return nil
}

func (s *Store) writeCounter(v uint64) error {
	if err := writeFile(s.counterPath(), []byte(strconv.FormatUint(v, 10)+"\n")); err != nil {
		return fmt.Errorf("persist id counter: %w", errdefs.NoSpace(err, "state", "the job id counter"))
	}
	return nil
}

// Save writes r, replacing the job's previous record, and waits for the
// disk.
func (s *Store) Save(r Record) error { return s.save(r, writeFile) }

// Update writes r like Save but does not wait for the disk: an isolator
// crash cannot lose it (it is in the page cache), a machine crash can, and
// then the previous record stays, whole. It is for what a reboot makes
// moot anyway, such as the identity of a running job's processes: they do
// not survive it either, and the previous record (RUNNING) ends the job as
// lost just the same.
func (s *Store) Update(r Record) error { return s.save(r, replaceFile) }

func (s *Store) save(r Record, write func(string, []byte) error) error {
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
	if err := write(s.recordPath(id), b); err != nil {
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

// replaceFile replaces path with b atomically, without waiting for the
// disk: a temporary file in the same directory renamed over path.
func replaceFile(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}
