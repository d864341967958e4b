// Package queue is the scheduler's persisted queue of jobs waiting for their
// time. The whole queue is one small JSON file, rewritten on every change by
// writing a temporary file, syncing it, renaming it over the old one and
// syncing the directory: after a crash at any point the file on disk is
// either the previous queue or the new one, never a mix.
package queue

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/joblet-dev/joblet/proto/atomicfile"
	"github.com/joblet-dev/joblet/proto/errdefs"
)

// FileName is the queue's file inside its directory.
const FileName = "queue.json"

// Entry is one job waiting to start.
type Entry struct {
	JobID string    `json:"job_id"`
	Due   time.Time `json:"due"`
	Seq   uint64    `json:"seq"`   // submission order, never reused
	Input string    `json:"input"` // the schedule as the user wrote it
}

// before orders entries by due time, then by submission order.
func before(a, b Entry) int {
	if c := a.Due.Compare(b.Due); c != 0 {
		return c
	}
	return cmp.Compare(a.Seq, b.Seq)
}

// file is the on-disk form.
type file struct {
	Version int     `json:"version"`
	NextSeq uint64  `json:"next_seq"`
	Entries []Entry `json:"entries"`
}

const version = 1

// Queue is the in-memory queue and its file. It is not safe for concurrent
// use: its one owner serialises calls.
type Queue struct {
	dir     string
	entries []Entry // sorted by before
	nextSeq uint64
}

// Load reads the queue in dir, creating dir (0700) when missing. A missing
// file is an empty queue; a damaged one is an error, so that schedules are
// never dropped silently.
func Load(dir string) (*Queue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create queue directory: %w", err)
	}
	if err := atomicfile.RemoveTemps(filepath.Join(dir, FileName)); err != nil {
		return nil, err
	}
	q := &Queue{dir: dir, nextSeq: 1}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return q, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read queue: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("queue %s is damaged: %w", filepath.Join(dir, FileName), err)
	}
	if f.Version != version {
		return nil, fmt.Errorf("queue %s has version %d, want %d", filepath.Join(dir, FileName), f.Version, version)
	}
	seen := make(map[string]bool, len(f.Entries))
	for _, e := range f.Entries {
		if e.JobID == "" || seen[e.JobID] {
			return nil, fmt.Errorf("queue %s is damaged: empty or repeated job id %q", filepath.Join(dir, FileName), e.JobID)
		}
		seen[e.JobID] = true
		q.nextSeq = max(q.nextSeq, e.Seq+1)
	}
	q.nextSeq = max(q.nextSeq, f.NextSeq)
	q.entries = f.Entries
	slices.SortFunc(q.entries, before)
	return q, nil
}

// Add queues jobID to start at due and persists the queue. It is
// idempotent: when jobID is already queued, the queue is unchanged and the
// existing entry is returned with added false.
func (q *Queue) Add(jobID string, due time.Time, input string) (e Entry, added bool, err error) {
	if old, ok := q.Get(jobID); ok {
		return old, false, nil
	}
	// Round drops the monotonic clock reading, which does not survive the
	// file, so that the entry in memory and on disk are the same.
	e = Entry{JobID: jobID, Due: due.Round(0), Seq: q.nextSeq, Input: input}
	next := slices.Insert(slices.Clone(q.entries), q.insertAt(e), e)
	if err := q.save(next, q.nextSeq+1); err != nil {
		return Entry{}, false, err
	}
	q.entries, q.nextSeq = next, q.nextSeq+1
	return e, true, nil
}

func (q *Queue) insertAt(e Entry) int {
	i, _ := slices.BinarySearchFunc(q.entries, e, before)
	return i
}

// Remove takes the given jobs off the queue with one write, and reports how
// many of them were queued. Jobs that are not queued are skipped.
func (q *Queue) Remove(jobIDs ...string) (int, error) {
	next := slices.DeleteFunc(slices.Clone(q.entries), func(e Entry) bool { return slices.Contains(jobIDs, e.JobID) })
	n := len(q.entries) - len(next)
	if n == 0 {
		return 0, nil
	}
	if err := q.save(next, q.nextSeq); err != nil {
		return 0, err
	}
	q.entries = next
	return n, nil
}

// Get returns jobID's entry.
func (q *Queue) Get(jobID string) (Entry, bool) {
	i := slices.IndexFunc(q.entries, func(e Entry) bool { return e.JobID == jobID })
	if i < 0 {
		return Entry{}, false
	}
	return q.entries[i], true
}

// Entries returns a copy of the queue, soonest first and, among entries due
// at the same instant, in submission order.
func (q *Queue) Entries() []Entry { return slices.Clone(q.entries) }

// Next returns the entry due soonest.
func (q *Queue) Next() (Entry, bool) {
	if len(q.entries) == 0 {
		return Entry{}, false
	}
	return q.entries[0], true
}

// Len is the number of entries.
func (q *Queue) Len() int { return len(q.entries) }

// save writes entries as the new queue file; the previous file stays in
// place until the new one is complete on disk. A full disk is
// errdefs.ErrResourceExhausted, and leaves the queue as it was.
func (q *Queue) save(entries []Entry, nextSeq uint64) error {
	if err := q.write(entries, nextSeq); err != nil {
		return errdefs.NoSpace(err, "state", "the schedule queue")
	}
	return nil
}

func (q *Queue) write(entries []Entry, nextSeq uint64) error {
	b, err := json.MarshalIndent(file{Version: version, NextSeq: nextSeq, Entries: entries}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode queue: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(q.dir, FileName), b, 0o600); err != nil {
		return fmt.Errorf("write queue: %w", err)
	}
	return nil
}
