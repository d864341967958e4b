// Package store persists the isolator's job records and its id counter under
// the isolator's state directory.
//
// Records go to one append-only journal (journal.go): each Save or Update
// appends the job's whole record, and the latest entry of an id is its
// record. One writer goroutine at a time owns the file and commits every
// pending entry with one write and, when a Save is among them, one
// fdatasync: concurrent Saves share the wait for the disk (group commit).
// Save returns once its entry is durable; Update once it is written (in the
// page cache), without waiting for the disk (see there); SaveAsync returns
// at once and tells both. The journal is
// rewritten with only the latest entry of each id at Open and whenever it
// has grown well past that size.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
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

// file is the on-disk form of a Record: the payload of a journal entry,
// and the content of a record file of the old layout.
type file struct {
	Job  json.RawMessage `json:"job"`
	Init Proc            `json:"init"`
	Shim Proc            `json:"shim,omitzero"`
}

// Store is the isolator's persisted state in one directory:
//
//	<dir>/last-id  no job id up to it may be handed out again
//	<dir>/journal  the job records (journal.go)
//
// A directory of the previous layout (<dir>/jobs/<id>.json, one file per
// record) is taken into the journal at Open (migrate.go).
type Store struct {
	dir string
	log zerolog.Logger

	mu       sync.Mutex // serialises id allocation
	lastID   uint64     // the last id handed out
	reserved uint64     // the counter on disk: NextID hands out ids up to it without a write

	jmu     sync.Mutex // guards next and writing
	idle    sync.Cond  // on jmu: broadcast when the writer stops
	next    *batch     // the entries waiting for the writer, nil if none
	writing bool       // a writer goroutine runs

	// Owned by the writer goroutine (and by Open before any).
	f         *os.File
	end       int64 // the end of the last entry written whole
	dirty     bool  // bytes past end may be left by a failed write: cut them first
	compacted int64 // the journal's size after the last compaction
	minFree   int64 // see reserve

	syncs      atomic.Int64 // fdatasyncs of the journal, for tests and benchmarks
	beforeSync func() error // nil but in tests, which hold the writer in a sync with it, or fail the sync
}

// idBlock is how many ids one durable write of the counter reserves: the
// counter is a step ahead of the ids handed out, so most jobs start without
// waiting for the disk. A crash skips the rest of the block (ids are never
// reused, and need not be consecutive); Close writes the exact counter.
const idBlock = 64

// Open opens (creating if needed) the store in dir, without logging what
// it repairs; see OpenLogging.
func Open(dir string) (*Store, error) { return OpenLogging(dir, zerolog.Nop()) }

// OpenLogging opens (creating if needed) the store in dir. The journal is
// read back (a torn or corrupt part is cut off and logged, see journal.go),
// records of the previous layout are taken in, and the journal is
// rewritten with the latest entry of each id. The id counter is read back
// and raised past any record found, so an id is never handed out twice even
// if the counter file was lost.
func OpenLogging(dir string, log zerolog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	s := &Store{dir: dir, log: log, minFree: defaultMinFree}
	s.idle.L = &s.jmu
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
	maxID, err := s.openJournal()
	if err != nil {
		return nil, err
	}
	s.lastID = max(s.lastID, maxID)
	s.reserved = s.lastID
	return s, nil
}

func (s *Store) counterPath() string { return filepath.Join(s.dir, "last-id") }

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

// Close waits until every entry appended is written, and writes the last id
// handed out as the counter, so that the next Store goes on right after it
// instead of after the reserved block. The Store stays usable.
func (s *Store) Close() error {
	s.flush()
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
	if err := atomicfile.WriteFile(s.counterPath(), []byte(strconv.FormatUint(v, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("persist id counter: %w", errdefs.NoSpace(err, "state", "the job id counter"))
	}
	return nil
}

// Save records r, replacing the job's previous record, and waits for the
// disk: once it returns, a machine crash cannot lose r.
func (s *Store) Save(r Record) error { return s.save(r, true) }

// Update records r like Save but waits only until r is written to the
// journal (the page cache), not for the disk. An isolator crash cannot lose
// it; a machine crash before the next Save's fdatasync (or the kernel's own
// writeback, within seconds) can, and then the job's record is the one
// before it. So can a failure of the disk in the next fdatasync of the
// journal (the entries of that batch are cut off again, see commit). It is
// for what a reboot makes moot anyway, such as the identity of a running
// job's processes: they do not survive it either, and the previous record
// (RUNNING) ends the job as lost just the same.
func (s *Store) Update(r Record) error { return s.save(r, false) }

func (s *Store) save(r Record, durable bool) error {
	n, b, err := encode(r)
	if err != nil {
		return err
	}
	return appendError(r.Job.GetId(), s.append(n, b, durable))
}

// SaveAsync records r as Save does, without waiting for it: the Saving
// tells when r is written (Written: from then on an isolator crash cannot
// lose it, as with Update) and when it is on disk (Durable: nor can a
// machine crash, as with Save). A caller can so do what needs only the
// first while the disk syncs: start a job once its record is written, and
// tell the job's client only once it is durable.
func (s *Store) SaveAsync(r Record) *Saving {
	n, b, err := encode(r)
	if err != nil {
		return &Saving{err: err}
	}
	return &Saving{id: r.Job.GetId(), b: s.enqueue(n, b, true)}
}

// Saving is a record on its way to disk (SaveAsync).
type Saving struct {
	id  string
	b   *batch // nil when err is set
	err error  // the record could not be encoded
}

// Written waits until the record is in the journal (the page cache) and
// returns the error that kept it out, if any.
func (w *Saving) Written() error {
	if w.b == nil {
		return w.err
	}
	<-w.b.written
	return appendError(w.id, w.b.writeErr)
}

// Durable waits until the record is on disk and returns the error that
// kept it from there, if any: then the record is gone from the journal
// (the batch is cut off again, see commit), though it was written.
func (w *Saving) Durable() error {
	if err := w.Written(); err != nil {
		return err
	}
	<-w.b.synced
	return appendError(w.id, w.b.syncErr)
}

// encode checks r's id and returns it with r's on-disk form.
func encode(r Record) (uint64, []byte, error) {
	id := r.Job.GetId()
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != id {
		return 0, nil, fmt.Errorf("save job record: bad id %q", id)
	}
	j, err := protojson.Marshal(r.Job)
	if err != nil {
		return 0, nil, fmt.Errorf("encode job %s: %w", id, err)
	}
	b, err := json.Marshal(file{Job: j, Init: r.Init, Shim: r.Shim})
	if err != nil {
		return 0, nil, fmt.Errorf("encode job %s: %w", id, err)
	}
	if len(b) > maxPayload { // it would read back as corruption
		return 0, nil, fmt.Errorf("save job %s: record of %d bytes, more than %d", id, len(b), maxPayload)
	}
	return n, b, nil
}

// appendError is what a caller is told of err, the failed append of job
// id's record; nil stays nil.
func appendError(id string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("save job %s: %w", id, errdefs.NoSpace(err, "state", "job "+id+"'s record"))
}

// Load returns every record, in increasing id order, once every entry
// appended before it is written.
func (s *Store) Load() ([]Record, error) {
	s.flush()
	return Read(s.dir)
}

// decode turns an entry's payload back into a Record.
func decode(b []byte) (Record, error) {
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return Record{}, err
	}
	j := &jobletv1.Job{}
	if err := protojson.Unmarshal(f.Job, j); err != nil {
		return Record{}, err
	}
	return Record{Job: j, Init: f.Init, Shim: f.Shim}, nil
}
