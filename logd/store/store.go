// Package store keeps each job's output as an append-only file of framed
// records, one file per job, and serves it to any number of readers. A Store
// implements logdapi.Logd.
//
// Offsets: a writer's offsets count every byte it has handed over (the
// "accepted" size), which is what Append returns and Stat reports, so that a
// writer can always resend from the last size it was told. A reader's offsets
// count the bytes kept in the file. The two are the same until the per-job
// cap is reached; past it, output is accepted and dropped, the kept bytes end
// with one truncation notice on stderr, and only the accepted size grows.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/logging"
)

// DefaultMaxLogBytes is the per-job cap when none is configured.
const DefaultMaxLogBytes = 1 << 30

// maxIDLen is the longest job id accepted: the decimal digits of a uint64.
const maxIDLen = 20

// Options tune a Store.
type Options struct {
	// MaxLogBytes caps the output kept per job; 0 or less means
	// DefaultMaxLogBytes.
	MaxLogBytes int64
	// Log receives warnings about repaired files.
	Log zerolog.Logger
}

// Store is every job's log under one directory. It is the one owner of the
// per-job state: all of it lives in the jobLogs of its map. A log is in the
// map while it is open or in use; a closed log nobody reads or writes is
// let go (release), and loaded from its file again when next asked for.
type Store struct {
	dir  string
	max  int64
	log  zerolog.Logger
	held atomic.Int64 // bytes in the logs' shared tails (tailBudget)
	// written counts the output bytes stored since Open (Written).
	written atomic.Int64
	sync    *syncer

	mu      sync.Mutex
	logs    map[string]*jobLog
	created chan struct{} // closed and replaced when a new log appears
	done    chan struct{} // closed by Close
	closed  bool
}

var _ logdapi.Logd = (*Store)(nil)

// Open returns a Store keeping logs in dir, which it creates (0700) if needed.
// Existing logs are picked up lazily, on first use.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", dir, err)
	}
	limit := opts.MaxLogBytes
	if limit <= 0 {
		limit = DefaultMaxLogBytes
	}
	return &Store{
		dir:     dir,
		max:     limit,
		log:     opts.Log,
		sync:    newSyncer(dir),
		logs:    map[string]*jobLog{},
		created: make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// Close flushes and closes every log. Followers return ErrUnavailable, and
// so does every later call.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	logs := make([]*jobLog, 0, len(s.logs))
	for _, l := range s.logs {
		logs = append(logs, l)
	}
	s.mu.Unlock()

	var errs []error
	for _, l := range logs {
		errs = append(errs, l.shut())
	}
	return errors.Join(errs...)
}

// Append implements logdapi.Logd.
func (s *Store) Append(_ context.Context, jobID string, recs []logdapi.Record, eof bool) (int64, error) {
	if err := validID(jobID); err != nil {
		return 0, err
	}
	l, _, err := s.get(jobID, true)
	if err != nil {
		return 0, err
	}
	defer s.release(jobID, l)
	return l.append(jobID, recs, eof, s.max)
}

// Stat implements logdapi.Logd. An unknown job is not an error: its Stat
// says it does not exist.
func (s *Store) Stat(_ context.Context, jobID string) (logdapi.Stat, error) {
	if err := validID(jobID); err != nil {
		return logdapi.Stat{}, err
	}
	l, _, err := s.get(jobID, false)
	if errors.Is(err, errdefs.ErrNotFound) {
		return logdapi.Stat{}, nil
	}
	if err != nil {
		return logdapi.Stat{}, err
	}
	defer s.release(jobID, l)
	return l.stat()
}

// Written returns how many bytes of output the store has stored since it
// was opened, for a rate of output (logd collects less often while output
// flows fast).
func (s *Store) Written() int64 { return s.written.Load() }

// Read implements logdapi.Logd. Each reader reads the file through its own
// descriptor at its own pace; writers only wake it, so a reader that is slow
// to take what it is given holds up nobody. Readers at the same place share
// what they read through the log's tail (shared.go).
func (s *Store) Read(ctx context.Context, jobID string, offset int64, follow bool, fn func(logdapi.Record) error) error {
	if err := validID(jobID); err != nil {
		return err
	}
	if offset < 0 {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "negative log offset %d", offset)
	}
	l, err := s.await(ctx, jobID, follow)
	if err != nil {
		return err
	}
	defer s.release(jobID, l)
	// seek also waits for the log to be loaded, or made, by whoever first
	// asked for it.
	start, err := l.seek(offset)
	if err != nil {
		return err
	}
	at := l.tail.join(start.pos)
	defer l.tail.leave(at)
	f, err := os.OpenFile(l.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open log of job %s: %w", jobID, err)
	}
	defer f.Close()
	r := newReader(f, start, offset)
	last := int64(-1) // without follow: the end of the log when Read began
	for {
		end, closed, changed, err := l.snapshot()
		if err != nil {
			return err
		}
		if !follow {
			if last < 0 {
				last = end
			}
			end = last
		}
		if r.pos < end {
			limit, done, err := l.tail.take(ctx, s.done, at)
			if err != nil {
				return err
			}
			err = r.sendTo(end, limit, &l.tail, at, fn)
			done()
			if err != nil {
				return err
			}
			if follow || r.pos < end {
				continue // more may have come while we were sending, or the turn ended first
			}
		}
		if !follow || closed {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return errShutdown
		}
	}
}

var errShutdown = errdefs.Errorf(errdefs.ErrUnavailable, "logd is shutting down")

// await returns jobID's log; with follow it waits for the log to appear.
func (s *Store) await(ctx context.Context, jobID string, follow bool) (*jobLog, error) {
	for {
		l, created, err := s.get(jobID, false)
		if err == nil || !follow || !errors.Is(err, errdefs.ErrNotFound) {
			return l, err
		}
		select {
		case <-created:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, errShutdown
		}
	}
}

// get returns jobID's log, loading it from disk, or with create making it,
// if it is not in memory yet. The caller hands it back with release when
// done. When the log does not exist it returns ErrNotFound and a channel
// that is closed when some new log appears.
func (s *Store) get(jobID string, create bool) (*jobLog, <-chan struct{}, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, errShutdown
	}
	if l := s.logs[jobID]; l != nil {
		l.users++
		s.mu.Unlock()
		return l, nil, nil
	}
	path := filepath.Join(s.dir, jobID+".log")
	_, err := os.Lstat(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("stat log of job %s: %w", jobID, err)
	}
	if !exists && !create {
		created := s.created
		s.mu.Unlock()
		return nil, created, errdefs.Errorf(errdefs.ErrNotFound, "no output for job %s", jobID)
	}
	// Load outside the store lock so a long scan holds up only this job:
	// others who find the log in the map wait on its own lock.
	l := &jobLog{path: path, changed: make(chan struct{}), drain: make(chan struct{}, 1), users: 1, tail: newTail(&s.held), sync: s.sync, written: &s.written}
	l.mu.Lock()
	s.logs[jobID] = l
	if !exists {
		close(s.created)
		s.created = make(chan struct{})
	}
	s.mu.Unlock()

	err = l.load(!exists, s.log.With().Str(logging.KeyJobID, jobID).Logger())
	if err != nil {
		l.err = fmt.Errorf("load log of job %s: %w", jobID, noSpace(err, jobID))
		err = l.err
	}
	l.mu.Unlock()
	if err != nil {
		s.mu.Lock()
		l.users--
		if s.logs[jobID] == l {
			delete(s.logs, jobID) // let a later call try again
		}
		s.mu.Unlock()
		return nil, nil, err
	}
	return l, nil, nil
}

// release hands back a log got from get. A closed log that nobody uses any
// more leaves memory: a job's log is read rarely once the job is over, and a
// store that kept every log it had seen would grow with every job. Its next
// use loads it from the file again (load), which is all there is to it.
func (s *Store) release(jobID string, l *jobLog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l.users--
	if l.users == 0 && l.ended.Load() && s.logs[jobID] == l {
		delete(s.logs, jobID)
	}
}

// validID admits only what the isolator hands out, so a job id can never
// name a path outside the store's directory.
func validID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "job id must be 1 to %d decimal digits", maxIDLen)
	}
	for _, c := range []byte(id) {
		if c < '0' || c > '9' {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "job id must be 1 to %d decimal digits", maxIDLen)
		}
	}
	return nil
}
