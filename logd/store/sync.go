package store

import (
	"os"
	"sync"
)

// maxSyncs is how many fsyncs a Store makes at once. An fsync blocks its
// goroutine's OS thread in the kernel for milliseconds, and the Go runtime
// gives the other goroutines a new thread meanwhile and keeps every
// thread it ever made (its stacks stay in the RSS): 1000 jobs at 32 at
// once left logd with 10-19 threads more than at rest, for good.
// Goroutines waiting for a turn are parked, which holds no thread; two at
// once keep the disk busy on their own.
const maxSyncs = 2

// syncer makes a Store's files durable, at most maxSyncs fsyncs at once,
// and its directory with one fsync for every entry made while the
// previous one ran (group commit). A call returns only once what it asked
// for is durable, as a direct fsync would.
type syncer struct {
	turns chan struct{} // one token per fsync under way
	// fsync is (*os.File).Sync; tests count and time the calls through it.
	fsync func(*os.File) error
	dir   string

	mu      sync.Mutex
	running *dirSync // the directory fsync under way, if any
	next    *dirSync // the one that starts after it, joined by later callers
}

// dirSync is one fsync of the directory and its outcome, shared by every
// caller that joined it.
type dirSync struct {
	done chan struct{}
	err  error
}

func newSyncer(dir string) *syncer {
	return &syncer{turns: make(chan struct{}, maxSyncs), fsync: (*os.File).Sync, dir: dir}
}

// file makes f's data durable; it waits for a turn first.
func (s *syncer) file(f *os.File) error {
	s.turns <- struct{}{}
	defer func() { <-s.turns }()
	return s.fsync(f)
}

// syncDir makes the directory's entries durable: those made before the call
// at least. A caller joins the next directory fsync, which starts once the
// one under way (begun perhaps before its entry existed) is over; the
// first caller to find none under way runs it for all who joined.
func (s *syncer) syncDir() error {
	s.mu.Lock()
	if s.next == nil {
		s.next = &dirSync{done: make(chan struct{})}
	}
	mine := s.next
	for {
		if s.next != mine {
			// Another caller has started mine.
			s.mu.Unlock()
			<-mine.done
			return mine.err
		}
		if s.running == nil {
			s.running, s.next = mine, nil
			s.mu.Unlock()
			mine.err = s.openAndSync()
			s.mu.Lock()
			s.running = nil
			s.mu.Unlock()
			close(mine.done)
			return mine.err
		}
		prev := s.running
		s.mu.Unlock()
		<-prev.done
		s.mu.Lock()
	}
}

func (s *syncer) openAndSync() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return s.file(d)
}
