package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/joblet-dev/joblet/proto/logdapi"
)

// A log's readers share two things here: what they read, and the CPU the
// job's writer needs.
//
// What they read: followers of one job mostly read the same bytes at about
// the same time. So while a log has several readers, a chunk one of them
// reads with another close behind it is kept for a while in the log's
// tail, and a reader that arrives at an offset the chunk holds sends the
// chunk from there (the same buffer), then goes on where the chunk ends:
// one read of the file and one buffer for every reader at that place, and
// readers whose chunks were cut at different places (each chunk ends where
// the log ended when it was read) fall in step again. A reader with nobody
// near reads the file on its own as before (into a pooled buffer), and so
// does one behind the tail: nobody waits for anybody, the tail is a cache,
// never a queue. A chunk stays valid for as long as the file exists, since
// frames up to the committed end are never written again.
//
// The CPU: each reader costs its whole path (logd's send, the gateway's
// TLS, its rnx) several CPU-seconds per GiB, so on a small machine a dozen
// followers of a job that writes fast take the CPU from the job itself,
// which then writes at a fraction of its speed. While the log is being
// written fast (hotRate), its readers therefore send one at a time, in
// turns of up to turnBytes: the job competes with one reader, as when one
// `rnx run` is attached to it, and the others catch up once it slows down
// or ends. The next turn goes to the reader furthest behind, so that
// followers come into step (and share their reads once the turns end). A
// reader alone never waits for a turn, and a turn held for turnWait (its
// holder's client has stopped reading) no longer counts, so no reader can
// hold up the others for long.
const (
	// tailChunks is how many chunks one log's tail holds.
	tailChunks = 16
	// tailSpan is how far behind a chunk another reader may be for the
	// chunk to be kept for it.
	tailSpan = tailChunks * maxChunk
	// tailBudget bounds the bytes held by all tails of a Store together.
	tailBudget = 8 << 20

	// hotRate is the write rate, in bytes per second, from which a log's
	// readers take turns: well above a job printing lines, well below one
	// writing as fast as it can, even one slowed down by its readers.
	// hotWindow is the period it is measured over.
	hotRate   = 8 << 20
	hotWindow = 50 * time.Millisecond
	// turnBytes is what a reader sends in one turn: several times what a
	// follower's path holds in flight once logd has sent it (the gateway's
	// 128 KiB window from logd, rnx's 4 MiB window from the gateway), so
	// that the followers not having their turn soon go idle; with turns of
	// a MiB, all 16 followers of the benchmark stayed busy. A turn held for
	// turnWait is taken to be stuck.
	turnBytes = 16 << 20
	turnWait  = 2 * time.Second
)

// tail is one log's readers: their positions, the chunks they share and
// their turns.
type tail struct {
	held *atomic.Int64 // bytes held by every tail of the Store

	mu      sync.Mutex
	readers []*atomic.Int64 // each reader's file position
	chunks  []sharedChunk   // by offset, ascending
	n       atomic.Int32    // len(readers)

	turn      bool         // a reader has its turn; guarded by mu
	turnSince int64        // unix nanoseconds when it began; guarded by mu
	waiting   []*waiter    // readers waiting for a turn; guarded by mu
	hotUntil  atomic.Int64 // unix nanoseconds until which readers take turns
	// the write rate's current period, guarded by the jobLog's mutex
	since  time.Time
	stored int64
}

// sharedChunk is a chunk as a reader sent it, read-only: the output from
// rec.Offset on, of the frames from file position pos up to next.
type sharedChunk struct {
	pos, next int64
	rec       logdapi.Record
}

func newTail(held *atomic.Int64) tail {
	return tail{held: held}
}

// join adds a reader starting at file position pos; its position is kept
// up to date in the handle returned, which leave takes back. The tail is
// emptied once fewer than two readers are left.
func (t *tail) join(pos int64) *atomic.Int64 {
	h := new(atomic.Int64)
	h.Store(pos)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.readers = append(t.readers, h)
	t.n.Store(int32(len(t.readers)))
	return h
}

func (t *tail) leave(h *atomic.Int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, r := range t.readers {
		if r == h {
			t.readers = append(t.readers[:i], t.readers[i+1:]...)
			break
		}
	}
	t.n.Store(int32(len(t.readers)))
	if len(t.readers) < 2 {
		t.drop(len(t.chunks))
	}
}

// worth reports whether a chunk read at file position pos is worth keeping:
// a reader other than self is at most tailSpan behind it, and the tail has
// room, or a chunk it can drop. Otherwise the chunk is read into a pooled
// buffer, as by a reader alone.
func (t *tail) worth(self *atomic.Int64, pos int64) bool {
	if t.n.Load() < 2 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.chunks) == tailChunks && t.unwanted() < 0 {
		return false
	}
	for _, r := range t.readers {
		if p := r.Load(); r != self && p <= pos && pos-p <= tailSpan {
			return true
		}
	}
	return false
}

// get returns a chunk that holds stored offset off, if the tail has one.
func (t *tail) get(off int64) (sharedChunk, bool) {
	if t.n.Load() < 2 {
		return sharedChunk{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.chunks) - 1; i >= 0; i-- { // followers are mostly near the end
		if c := t.chunks[i]; c.rec.Offset <= off && off < c.rec.Offset+int64(len(c.rec.Data)) {
			return c, true
		}
	}
	return sharedChunk{}, false
}

// put keeps c, whose data must not be written again by anyone. A full tail
// makes room by dropping its oldest chunk that no reader still comes to;
// when every chunk is still wanted, c is not kept.
func (t *tail) put(c sharedChunk) {
	n := int64(len(c.rec.Data))
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.readers) < 2 {
		return
	}
	i := len(t.chunks)
	for i > 0 && t.chunks[i-1].rec.Offset >= c.rec.Offset {
		i--
	}
	if i < len(t.chunks) && t.chunks[i].rec.Offset == c.rec.Offset {
		return // another reader put one there first
	}
	if len(t.chunks) == tailChunks {
		j := t.unwanted()
		if j < 0 {
			return
		}
		t.held.Add(-int64(len(t.chunks[j].rec.Data)))
		last := len(t.chunks) - 1
		copy(t.chunks[j:], t.chunks[j+1:])
		t.chunks[last] = sharedChunk{} // the slot freed must not hold on to the data
		t.chunks = t.chunks[:last]
		if j < i {
			i--
		}
	}
	if t.held.Add(n) > tailBudget {
		t.held.Add(-n)
		return
	}
	t.chunks = append(t.chunks, sharedChunk{})
	copy(t.chunks[i+1:], t.chunks[i:])
	t.chunks[i] = c
}

// unwanted returns the index of the oldest chunk no reader comes to any
// more (none is before its end and at most tailSpan before its start), or
// -1. t.mu is held.
func (t *tail) unwanted() int {
	for i, c := range t.chunks {
		wanted := false
		for _, r := range t.readers {
			if p := r.Load(); p < c.next && c.pos-p <= tailSpan {
				wanted = true
				break
			}
		}
		if !wanted {
			return i
		}
	}
	return -1
}

// drop lets go of the n oldest chunks. t.mu is held.
func (t *tail) drop(n int) {
	var b int64
	for _, c := range t.chunks[:n] {
		b += int64(len(c.rec.Data))
	}
	t.held.Add(-b)
	k := copy(t.chunks, t.chunks[n:])
	clear(t.chunks[k:]) // the slots left behind must not hold on to the data
	t.chunks = t.chunks[:k]
}

// wrote records that the log's kept bytes reached stored, and starts or
// ends the readers' turns by the rate over the last hotWindow or more. The
// jobLog's mutex is held.
func (t *tail) wrote(stored int64, closed bool) {
	if closed {
		t.hotUntil.Store(0)
		return
	}
	now := time.Now()
	d := now.Sub(t.since)
	if d < hotWindow {
		return
	}
	if float64(stored-t.stored) >= hotRate*d.Seconds() {
		t.hotUntil.Store(now.Add(2 * hotWindow).UnixNano())
	}
	t.since, t.stored = now, stored
}

// take waits for the turn of the reader at position at when it has to take
// one, and returns how much it may send (0: no limit) and the function that
// ends the turn. A waiting reader looks again every hotWindow: once the log
// is no longer written fast, or the turn has been held for turnWait (its
// holder's client has stopped reading), it goes on without one.
func (t *tail) take(ctx context.Context, done <-chan struct{}, at *atomic.Int64) (limit int64, end func(), err error) {
	var tick *time.Timer
	for {
		now := time.Now().UnixNano()
		if t.n.Load() < 2 || now >= t.hotUntil.Load() {
			return 0, func() {}, nil
		}
		t.mu.Lock()
		if !t.turn {
			t.turn, t.turnSince = true, now
			t.mu.Unlock()
			return turnBytes, t.pass, nil
		}
		if now-t.turnSince >= int64(turnWait) {
			t.mu.Unlock()
			return turnBytes, func() {}, nil // the holder is stuck; go on regardless
		}
		w := &waiter{at: at, ready: make(chan struct{})}
		t.waiting = append(t.waiting, w)
		t.mu.Unlock()

		if tick == nil {
			tick = time.NewTimer(hotWindow)
			defer tick.Stop()
		} else {
			tick.Reset(hotWindow)
		}
		select {
		case <-w.ready:
			return turnBytes, t.pass, nil
		case <-tick.C:
		case <-ctx.Done():
			err = ctx.Err()
		case <-done:
			err = errShutdown
		}
		if !t.unqueue(w) { // given the turn meanwhile
			if err != nil {
				t.pass()
				return 0, nil, err
			}
			return turnBytes, t.pass, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// waiter is a reader waiting for its turn.
type waiter struct {
	at    *atomic.Int64
	ready chan struct{} // closed when the turn is given to it
}

// pass ends a turn: the next goes to the waiting reader furthest behind
// (the first to ask among equals), so that readers come into step and
// share what they read through the tail, instead of staying as far apart
// as they were.
func (t *tail) pass() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.waiting) == 0 {
		t.turn = false
		return
	}
	next := 0
	for i, w := range t.waiting {
		if w.at.Load() < t.waiting[next].at.Load() {
			next = i
		}
	}
	w := t.waiting[next]
	t.waiting = append(t.waiting[:next], t.waiting[next+1:]...)
	t.turnSince = time.Now().UnixNano()
	close(w.ready)
}

// unqueue takes w off the waiting list; false means it was given the turn.
func (t *tail) unqueue(w *waiter) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, x := range t.waiting {
		if x == w {
			t.waiting = append(t.waiting[:i], t.waiting[i+1:]...)
			return true
		}
	}
	return false
}
