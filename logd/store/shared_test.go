package store

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/joblet-dev/joblet/proto/logdapi"
)

// bigLog appends n records of one full frame each, alternating streams so
// that every frame is a chunk of its own, and closes the log.
func bigLog(t *testing.T, s *Store, id string, n int) []logdapi.Record {
	t.Helper()
	var recs []logdapi.Record
	var off int64
	for i := range n {
		st := out
		if i%2 == 1 {
			st = errS
		}
		r := logdapi.Record{Stream: st, Offset: off, Data: bytes.Repeat([]byte{byte('a' + i%26)}, maxData)}
		mustAppend(t, s, id, false, r)
		recs = append(recs, r)
		off += maxData
	}
	mustAppend(t, s, id, true)
	return recs
}

// followed is what a follower got, and how it ended.
type followed struct {
	recs []logdapi.Record
	err  error
}

// blockedFollower starts a follower of id that stops inside its first
// chunk until release is closed, and returns once it is there.
func blockedFollower(t *testing.T, s *Store, id string, release <-chan struct{}) <-chan followed {
	t.Helper()
	in := make(chan struct{})
	res := make(chan followed, 1)
	go func() {
		var recs []logdapi.Record
		first := true
		err := s.Read(context.Background(), id, 0, true, func(r logdapi.Record) error {
			recs = append(recs, r)
			if first {
				first = false
				close(in)
				<-release
			}
			return nil
		})
		res <- followed{recs, err}
	}()
	select {
	case <-in:
	case <-time.After(10 * time.Second):
		t.Fatal("follower never got its first chunk")
	}
	return res
}

// While a log has several readers, a chunk one of them read with another
// reader close behind is what the next reader at the same place is sent:
// the same buffer, not a second read of the file. Chunks nobody is near are
// not kept.
func TestTailShared(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	want := bigLog(t, s, "1", 3*tailChunks)
	// Two followers stuck in their first chunk: the log has other readers
	// than the one reading throughout.
	release := make(chan struct{})
	blocked := []<-chan followed{blockedFollower(t, s, "1", release), blockedFollower(t, s, "1", release)}

	a := readAll(t, s, "1", 0)
	b := readAll(t, s, "1", 0)
	for _, got := range [][]logdapi.Record{a, b} {
		if !bytes.Equal(bytesOf(got), bytesOf(want)) || !bytes.Equal(streamOf(got), streamOf(want)) {
			t.Fatal("a reader got different bytes")
		}
	}
	if len(a) != len(want) || len(b) != len(want) {
		t.Fatalf("%d and %d chunks, want %d", len(a), len(b), len(want))
	}
	// The followers wait after chunk 0: the chunks up to tailSpan past them
	// were kept.
	same := 0
	for i := range a {
		if unsafe.SliceData(a[i].Data) == unsafe.SliceData(b[i].Data) {
			same++
			if i < 1 || i > tailChunks {
				t.Fatalf("chunk %d shared; want chunks 1 to %d only", i, tailChunks)
			}
		}
	}
	if same != tailChunks {
		t.Fatalf("%d chunks shared, want %d", same, tailChunks)
	}
	if h := s.held.Load(); h != tailChunks*maxData {
		t.Fatalf("tails hold %d bytes, want %d", h, tailChunks*maxData)
	}

	close(release)
	for _, c := range blocked {
		if got := <-c; got.err != nil || !bytes.Equal(bytesOf(got.recs), bytesOf(want)) {
			t.Fatalf("a blocked follower got different bytes, or %v", got.err)
		}
	}
	// The last reader gone, the tail lets go of its chunks.
	if h := s.held.Load(); h != 0 {
		t.Fatalf("tails hold %d bytes with no reader left", h)
	}
}

// A reader that wants an offset inside a chunk of the tail (it starts
// there, or its own chunks were cut elsewhere) is sent the chunk from that
// offset on, and goes on in step with the others; from any offset, every
// reader gets the right bytes.
func TestTailMidFrame(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	want := bigLog(t, s, "2", 4)
	release := make(chan struct{})
	blocked := []<-chan followed{blockedFollower(t, s, "2", release), blockedFollower(t, s, "2", release)}

	a := readAll(t, s, "2", 0) // chunks 1 to 3 are kept: the followers are near
	mid := readAll(t, s, "2", maxData+7)
	if len(mid) != 3 || unsafe.SliceData(mid[0].Data) != &a[1].Data[7] ||
		unsafe.SliceData(mid[1].Data) != unsafe.SliceData(a[2].Data) {
		t.Fatal("a reader starting inside a kept chunk did not take it, and the next, from the tail")
	}
	wb := bytesOf(want)
	for _, from := range []int64{maxData + 7, 1, 0, maxData + 7, 0} {
		got := readAll(t, s, "2", from)
		flat(t, got, from)
		if !bytes.Equal(bytesOf(got), wb[from:]) {
			t.Fatalf("from %d: wrong bytes", from)
		}
	}
	if h := s.held.Load(); h == 0 {
		t.Fatal("nothing was shared")
	}
	close(release)
	for _, c := range blocked {
		if got := <-c; got.err != nil || !bytes.Equal(bytesOf(got.recs), wb) {
			t.Fatalf("a blocked follower got different bytes, or %v", got.err)
		}
	}
}

// Followers of a log being written: one stops reading for the whole run,
// and neither the writer nor the other followers wait for it; one joins
// halfway, from offset 0. Every follower gets every byte, in order, on its
// stream.
func TestFollowersShareAndNobodyWaits(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const fast = 6
	type result struct {
		recs []logdapi.Record
		err  error
	}
	results := make(chan result, fast+1)
	var wg sync.WaitGroup
	start := func() {
		wg.Go(func() { r, err := follow(ctx, s, "3"); results <- result{r, err} })
	}
	for range fast {
		start()
	}
	// The slow follower takes its first chunk, then stops reading until
	// everything else is over.
	release := make(chan struct{})
	slow := make(chan result, 1)
	stuck := make(chan struct{})
	go func() {
		var recs []logdapi.Record
		err := s.Read(ctx, "3", 0, true, func(r logdapi.Record) error {
			recs = append(recs, r)
			if len(recs) == 1 {
				close(stuck)
				<-release
			}
			return nil
		})
		slow <- result{recs, err}
	}()

	var want []logdapi.Record
	var off int64
	write := func(n int, seed uint64) {
		// Random records, made in a log of their own, moved to the end of "3".
		for _, r := range writeRandom(t, s, strconv.FormatUint(30+seed, 10), n, seed) {
			r.Offset += off
			mustAppend(t, s, "3", false, r)
			want = append(want, r)
		}
		off = want[len(want)-1].Offset + int64(len(want[len(want)-1].Data))
	}
	write(2<<20, 5)
	<-stuck
	start() // joins halfway, from 0
	write(2<<20, 6)
	mustAppend(t, s, "3", true) // the writer got here with the slow follower stuck

	for range fast + 1 {
		res := <-results // before the slow follower is let go
		if res.err != nil {
			t.Fatal(res.err)
		}
		flat(t, res.recs, 0)
		if !bytes.Equal(bytesOf(res.recs), bytesOf(want)) || !bytes.Equal(streamOf(res.recs), streamOf(want)) {
			t.Fatal("a follower got different bytes")
		}
	}
	close(release)
	res := <-slow
	if res.err != nil {
		t.Fatal(res.err)
	}
	flat(t, res.recs, 0)
	if !bytes.Equal(bytesOf(res.recs), bytesOf(want)) || !bytes.Equal(streamOf(res.recs), streamOf(want)) {
		t.Fatal("the slow follower got different bytes")
	}
	wg.Wait()
}

// Readers take turns only while the log is written fast and they are more
// than one; a turn held for turnWait no longer counts; waiting readers go on
// once the log is no longer written fast.
func TestTurns(t *testing.T) {
	var held atomic.Int64
	tl := newTail(&held)
	ctx := context.Background()
	done := make(chan struct{})
	a := tl.join(0)
	defer tl.leave(a)

	tl.since = time.Now().Add(-hotWindow)
	tl.wrote(hotRate, false) // a second's worth in one window
	if time.Now().UnixNano() >= tl.hotUntil.Load() {
		t.Fatal("a log written at more than hotRate is not hot")
	}
	tl.hotUntil.Store(time.Now().Add(time.Hour).UnixNano()) // hot for the rest of the test
	if limit, end, err := tl.take(ctx, done, a); err != nil || limit != 0 {
		t.Fatalf("a reader alone got a turn of %d (%v)", limit, err)
	} else {
		end()
	}

	b := tl.join(0)
	defer tl.leave(b)
	limit, endA, err := tl.take(ctx, done, a)
	if err != nil || limit != turnBytes {
		t.Fatalf("first of two readers of a hot log: limit %d, %v", limit, err)
	}
	// The turn is held: the second reader waits, and goes on once the
	// holder has held it for turnWait.
	t0 := time.Now()
	limit, endB, err := tl.take(ctx, done, a)
	if err != nil || limit != turnBytes {
		t.Fatalf("second reader: limit %d, %v", limit, err)
	}
	if d := time.Since(t0); d < turnWait-hotWindow {
		t.Fatalf("second reader went on after %v with the turn held, want about %v", d, turnWait)
	}
	endB()
	endA()
	t0 = time.Now()
	if limit, endB, _ = tl.take(ctx, done, a); limit != turnBytes {
		t.Fatalf("turn of %d", limit)
	}
	if d := time.Since(t0); d >= hotWindow {
		t.Fatalf("a free turn took %v", d)
	}
	// A cancelled reader stops waiting.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := tl.take(cctx, done, a); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting for a turn with a cancelled context: %v", err)
	}
	// The log's end lets a waiting reader go on.
	waited := make(chan int64, 1)
	go func() { l, end, _ := tl.take(ctx, done, a); end(); waited <- l }()
	time.Sleep(2 * hotWindow)
	tl.wrote(0, true)
	select {
	case l := <-waited:
		if l != 0 {
			t.Fatalf("after the log's end a reader got a turn of %d", l)
		}
	case <-time.After(turnWait):
		t.Fatal("a reader still waits for a turn after the log's end")
	}
	endB()

	// A slow writer does not make the log hot.
	tl.since, tl.stored = time.Now().Add(-hotWindow), 0
	tl.wrote(hotRate/40, false) // 25 ms worth in 50 ms
	if time.Now().UnixNano() < tl.hotUntil.Load() {
		t.Fatal("a log written at less than hotRate is hot")
	}
}

// A full tail makes room only with a chunk every reader has passed, or
// none is near; while all are still wanted, a new chunk is not kept. The
// bytes held are counted store-wide.
func TestTailKeepsWhatReadersWant(t *testing.T) {
	var held atomic.Int64
	tl := newTail(&held)
	a, b := tl.join(0), tl.join(0)
	chunk := func(i int) sharedChunk {
		p := int64(i) * 100
		return sharedChunk{pos: p, next: p + 100, rec: logdapi.Record{Offset: p, Data: make([]byte, 95)}}
	}
	for i := range tailChunks {
		tl.put(chunk(i))
	}
	tl.put(chunk(tailChunks)) // both readers are at 0: everything is wanted
	if _, ok := tl.get(int64(tailChunks) * 100); ok {
		t.Fatal("a full tail of wanted chunks took another")
	}
	if _, ok := tl.get(0); !ok {
		t.Fatal("a wanted chunk was dropped")
	}
	a.Store(150) // a is inside chunk 1, b still at 0
	tl.put(chunk(tailChunks))
	if _, ok := tl.get(int64(tailChunks) * 100); ok {
		t.Fatal("chunk 0 was dropped while b has yet to read it")
	}
	b.Store(100) // both past chunk 0
	tl.put(chunk(tailChunks))
	if _, ok := tl.get(int64(tailChunks) * 100); !ok {
		t.Fatal("a chunk every reader passed was not given up for a new one")
	}
	if _, ok := tl.get(50); ok {
		t.Fatal("chunk 0 is still there")
	}
	if got := held.Load(); got != tailChunks*95 {
		t.Fatalf("held %d bytes, want %d", got, tailChunks*95)
	}
	tl.leave(a)
	if got := held.Load(); got != 0 {
		t.Fatalf("with one reader left the tail holds %d bytes", got)
	}
	tl.leave(b)
}

// The next turn goes to the waiting reader furthest behind, whatever the
// order they asked in.
func TestTurnToFurthestBehind(t *testing.T) {
	var held atomic.Int64
	tl := newTail(&held)
	ctx, done := context.Background(), make(chan struct{})
	a, ahead, behind := tl.join(0), tl.join(500), tl.join(100)
	tl.hotUntil.Store(time.Now().Add(time.Hour).UnixNano())

	_, endA, err := tl.take(ctx, done, a)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 2)
	wait := func(name string, at *atomic.Int64) {
		_, end, err := tl.take(ctx, done, at)
		if err != nil {
			t.Error(err)
		}
		got <- name
		time.Sleep(10 * time.Millisecond)
		end()
	}
	go wait("ahead", ahead)
	for len(tl.queued()) < 1 {
		time.Sleep(time.Millisecond)
	}
	go wait("behind", behind)
	for len(tl.queued()) < 2 {
		time.Sleep(time.Millisecond)
	}
	endA()
	if first := <-got; first != "behind" {
		t.Fatalf("the turn went to the reader %s", first)
	}
	<-got
}

// queued is a snapshot of the readers waiting for a turn.
func (t *tail) queued() []*waiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*waiter(nil), t.waiting...)
}
