package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/logdapi"
)

// syncCounter replaces a syncer's fsync: it counts the calls and the most
// under way at once, makes each take a while (as under load), and records
// which files are durable once the real fsync returned.
type syncCounter struct {
	mu       sync.Mutex
	now, max int
	files    map[string]bool // file fsyncs done, by path
	dirs     int             // directory fsyncs done
}

func countSyncs(s *syncer) *syncCounter {
	c := &syncCounter{files: map[string]bool{}}
	next := s.fsync
	s.fsync = func(f *os.File) error {
		c.mu.Lock()
		c.now++
		c.max = max(c.max, c.now)
		c.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		err := next(f)
		c.mu.Lock()
		c.now--
		if fi, serr := f.Stat(); serr == nil && fi.IsDir() {
			c.dirs++
		} else {
			c.files[f.Name()] = true
		}
		c.mu.Unlock()
		return err
	}
	return c
}

func (c *syncCounter) synced(path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.files[path]
}

// A burst of logs made and closed at once: at most maxSyncs fsyncs run at
// once, each close returns only once its log's data is fsynced, the new
// names share directory fsyncs, and every byte is in the files.
func TestBurstOfClosesBoundsFsyncs(t *testing.T) {
	const n = 48
	dir := filepath.Join(t.TempDir(), "logs")
	s, err := Open(dir, Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	c := countSyncs(s.sync)
	want := func(i int) string {
		return fmt.Sprintf("job %d: %s\n", i, bytes.Repeat([]byte{byte('a' + i%26)}, 1000+i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint(i + 1)
			if _, err := s.Append(context.Background(), id, nil, false); err != nil {
				errs <- err
				return
			}
			if _, err := s.Append(context.Background(), id, []logdapi.Record{rec(out, 0, want(i))}, true); err != nil {
				errs <- err
				return
			}
			if !c.synced(filepath.Join(dir, id+".log")) {
				errs <- fmt.Errorf("log %s closed before its fsync was done", id)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c.max > maxSyncs || c.max < 1 {
		t.Errorf("%d fsyncs at once, want 1 to %d", c.max, maxSyncs)
	}
	if len(c.files) != n {
		t.Errorf("%d logs fsynced, want %d", len(c.files), n)
	}
	if c.dirs < 1 || c.dirs >= n {
		t.Errorf("%d directory fsyncs for %d new logs, want shared ones", c.dirs, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Read back from the files, by a new store.
	s2 := open(t, dir, 0)
	for i := range n {
		recs := readAll(t, s2, fmt.Sprint(i+1), 0)
		if got := bytesOf(recs); string(got) != want(i) || recs[0].Stream != out {
			t.Errorf("log %d read back %d bytes on %v, want %d on stdout", i+1, len(got), recs[0].Stream, len(want(i)))
		}
	}
}

// A directory fsync covers only the entries made before it started, so a
// caller never returns on one that began before it called; callers that
// come while one runs share the next.
func TestSyncDirWaitsForAnFsyncStartedAfterTheCall(t *testing.T) {
	s := newSyncer(t.TempDir())
	var started, doneUpTo atomic.Int64 // fsyncs started; highest index finished + 1
	release := make(chan struct{})
	s.fsync = func(*os.File) error {
		i := started.Add(1) - 1
		if i == 0 {
			<-release // hold the first one while others come
		}
		for {
			d := doneUpTo.Load()
			if i+1 <= d || doneUpTo.CompareAndSwap(d, i+1) {
				return nil
			}
		}
	}
	first := make(chan error, 1)
	go func() { first <- s.syncDir() }()
	for started.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	const n = 20
	var wg, ready sync.WaitGroup
	bad := make(chan string, n)
	for range n {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			before := started.Load() // fsyncs started before this call
			if err := s.syncDir(); err != nil {
				bad <- err.Error()
			}
			if doneUpTo.Load() <= before {
				bad <- "returned before an fsync started after the call was done"
			}
		}()
	}
	ready.Wait()
	time.Sleep(100 * time.Millisecond) // let them all join the next one
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	close(bad)
	for b := range bad {
		t.Error(b)
	}
	if got := started.Load(); got != 2 {
		t.Errorf("%d directory fsyncs for 1 + %d callers, want 2 (the held one and one shared)", got, n)
	}
}

// Every caller of a failed directory fsync gets its error.
func TestSyncDirError(t *testing.T) {
	s := newSyncer(filepath.Join(t.TempDir(), "missing"))
	if err := s.syncDir(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("syncDir of a missing directory: %v", err)
	}
}

// A new log's first output is taken, and read, while the fsync of its name
// (the directory's) is still under way; its close returns only once that
// fsync is over too. It fails if a log's creation waits for the directory
// fsync, or its close does not.
func TestNewLogsNameDurableByItsClose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	s, err := Open(dir, Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := make(chan struct{})
	var dirSyncs atomic.Int32
	next := s.sync.fsync
	s.sync.fsync = func(f *os.File) error {
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			<-release
			defer dirSyncs.Add(1)
		}
		return next(f)
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	ctx := context.Background()
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "1", []logdapi.Record{{Stream: out, Data: []byte("hello\n")}}, false)
		appended <- err
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the new log's first output waited for the directory's fsync")
	}
	st, err := s.Stat(ctx, "1")
	if err != nil || st.Size != 6 || st.Closed {
		t.Fatalf("Stat = %+v, %v; want 6 bytes, open", st, err)
	}
	closed := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "1", nil, true)
		closed <- err
	}()
	select {
	case err := <-closed:
		t.Fatalf("the log closed (%v) before its name was durable", err)
	case <-time.After(200 * time.Millisecond):
	}
	released = true
	close(release)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the log did not close once the directory's fsync was over")
	}
	if dirSyncs.Load() == 0 {
		t.Fatal("no directory fsync")
	}
	if st, err := s.Stat(ctx, "1"); err != nil || !st.Closed {
		t.Fatalf("Stat = %+v, %v; want closed", st, err)
	}
}
