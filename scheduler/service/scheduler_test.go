package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/scheduler/queue"
)

var bg = context.Background()

func schedule(t *testing.T, s *instance, id, input string) time.Time {
	t.Helper()
	e, err := s.Schedule(bg, id, input)
	if err != nil {
		t.Fatalf("Schedule(%s, %q): %v", id, input, err)
	}
	return e.Due
}

func queuedIDs(t *testing.T, s *instance) []string {
	t.Helper()
	es, err := s.List(bg)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.JobID)
	}
	return ids
}

// TestFiresOnTime: a job scheduled 2 s ahead starts at its time, within a
// second, and leaves the queue.
func TestFiresOnTime(t *testing.T) {
	f := newFake()
	s := run(t, t.TempDir(), f, nil)
	due := schedule(t, s, "j1", "2s")
	waitFor(t, 4*time.Second, "j1 to start", func() bool { _, ok := f.startedAt("j1"); return ok })
	at, _ := f.startedAt("j1")
	if at.Before(due) || at.Sub(due) > time.Second {
		t.Fatalf("started at %v, due %v: %v late", at, due, at.Sub(due))
	}
	waitFor(t, time.Second, "the queue to empty", func() bool { return len(queuedIDs(t, s)) == 0 })
}

func TestCancelNeverFires(t *testing.T) {
	f := newFake()
	s := run(t, t.TempDir(), f, nil)
	schedule(t, s, "gone", "1s")
	schedule(t, s, "kept", "1s")
	if pending, err := s.Cancel(bg, "gone"); !pending || err != nil {
		t.Fatalf("Cancel = %v, %v, want true", pending, err)
	}
	if pending, err := s.Cancel(bg, "gone"); pending || err != nil {
		t.Fatalf("second Cancel = %v, %v, want false, nil", pending, err)
	}
	if pending, err := s.Cancel(bg, "never-scheduled"); pending || err != nil {
		t.Fatalf("Cancel of an unknown job = %v, %v, want false, nil", pending, err)
	}
	waitFor(t, 3*time.Second, "kept to start", func() bool { _, ok := f.startedAt("kept"); return ok })
	time.Sleep(200 * time.Millisecond)
	if calls, _ := f.snapshot(); calls["gone"] != 0 {
		t.Fatalf("canceled job handed off %d times", calls["gone"])
	}
}

// TestRestartsFireOnce runs the scheduler three times on one queue, with a
// stop in between while jobs fall due. Every job is handed off exactly once,
// those due during a downtime as soon as the scheduler is back, with the
// delay recorded.
func TestRestartsFireOnce(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	s := run(t, dir, f, nil)
	schedule(t, s, "a", "1s") // due in the first downtime
	schedule(t, s, "b", "2s") // due in the second downtime
	schedule(t, s, "c", "3s") // due while the third instance runs
	schedule(t, s, "far", "1h")
	s.stop()

	time.Sleep(1300 * time.Millisecond)
	s = run(t, dir, f, nil)
	waitFor(t, time.Second, "a to start after the restart", func() bool { _, ok := f.startedAt("a"); return ok })
	waitFor(t, time.Second, "a to leave the queue", func() bool { return !slices.Contains(queuedIDs(t, s), "a") })
	s.stop()

	time.Sleep(1000 * time.Millisecond)
	s = run(t, dir, f, nil)
	waitFor(t, 3*time.Second, "c to start", func() bool { _, ok := f.startedAt("c"); return ok })
	waitFor(t, time.Second, "c to leave the queue", func() bool { return !slices.Contains(queuedIDs(t, s), "c") })

	calls, started := f.snapshot()
	if !slices.Equal(started, []string{"a", "b", "c"}) {
		t.Errorf("started %v, want [a b c]", started)
	}
	for _, id := range []string{"a", "b", "c"} {
		if calls[id] != 1 {
			t.Errorf("%s handed off %d times, want once", id, calls[id])
		}
	}
	f.mu.Lock()
	da, db := f.delay["a"], f.delay["b"]
	f.mu.Unlock()
	if da < 200*time.Millisecond || db < 200*time.Millisecond {
		t.Errorf("delays of jobs due while down: a %v, b %v, want the downtime", da, db)
	}
	if got := queuedIDs(t, s); !slices.Equal(got, []string{"far"}) {
		t.Errorf("queue %v, want [far]", got)
	}
}

// TestCrashBetweenStartAndRemoval is a crash after the isolator accepted a
// start but before the queue without the job reached the disk: the restarted
// scheduler hands the job off a second time. That is the one case of a
// repeated hand-off, and the isolator's idempotency makes it harmless: the
// fake isolator sees the id twice and starts it once.
func TestCrashBetweenStartAndRemoval(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	s := run(t, dir, f, nil)
	schedule(t, s, "a", "1s")
	before, err := os.ReadFile(filepath.Join(dir, queue.FileName))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "a to start", func() bool { _, ok := f.startedAt("a"); return ok })
	waitFor(t, time.Second, "a to leave the queue", func() bool { return len(queuedIDs(t, s)) == 0 })
	s.stop()
	// The disk as the crash left it: the removal never happened.
	if err := os.WriteFile(filepath.Join(dir, queue.FileName), before, 0o600); err != nil {
		t.Fatal(err)
	}

	for range 2 { // and again: the second restart hands off nothing
		s = run(t, dir, f, nil)
		waitFor(t, time.Second, "the queue to empty", func() bool { return len(queuedIDs(t, s)) == 0 })
		s.stop()
	}
	calls, started := f.snapshot()
	if calls["a"] != 2 || !slices.Equal(started, []string{"a"}) {
		t.Fatalf("hand-offs %d, started %v: want 2 hand-offs and one start", calls["a"], started)
	}
}

// TestManyDueAtOnce: 200 jobs due the same second all start, in submission
// order, within a second of their time. The clock is held an hour back
// while they are queued, so that a slow disk cannot make the due time pass
// before the last one is accepted; then it is set a second before the due
// time and runs at real speed.
func TestManyDueAtOnce(t *testing.T) {
	var offset atomic.Int64
	offset.Store(int64(-time.Hour))
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	f := newFake()
	s := run(t, t.TempDir(), f, now)
	due := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	var want []string
	for i := range 200 {
		id := fmt.Sprintf("job-%03d", 199-i) // ids sort opposite to submission
		want = append(want, id)
		if got := schedule(t, s, id, due.Format(time.RFC3339)); !got.Equal(due) {
			t.Fatalf("due %v, want %v", got, due)
		}
	}
	offset.Store(int64(due.Add(-time.Second).Sub(time.Now())))
	waitFor(t, 4*time.Second, "200 starts", func() bool { _, st := f.snapshot(); return len(st) == 200 })
	_, started := f.snapshot()
	if !slices.Equal(started, want) {
		t.Fatalf("start order differs from submission order: %v", started[:10])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range want {
		if d := f.delay[id]; d > time.Second {
			t.Fatalf("%s started %v late", id, d)
		}
	}
}

// TestClockStepForward: the wall clock jumps 31 minutes ahead; a job due in
// 30 minutes is now due and starts within a second, though no timer of
// that length ever ran.
func TestClockStepForward(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	f := newFake()
	s := run(t, t.TempDir(), f, now)
	schedule(t, s, "later", "30min")
	schedule(t, s, "much-later", "2h")
	time.Sleep(300 * time.Millisecond)
	if _, ok := f.startedAt("later"); ok {
		t.Fatal("started before its time")
	}
	offset.Store(int64(31 * time.Minute))
	stepped := time.Now()
	waitFor(t, 2*time.Second, "later to start after the step", func() bool { _, ok := f.startedAt("later"); return ok })
	if at, _ := f.startedAt("later"); at.Sub(stepped) > maxSleep+200*time.Millisecond {
		t.Errorf("started %v after the step", at.Sub(stepped))
	}
	f.mu.Lock()
	delay := f.delay["later"]
	f.mu.Unlock()
	if delay < time.Minute-time.Second || delay > time.Minute+2*time.Second {
		t.Errorf("delay %v, want about the minute the clock overshot", delay)
	}
	if _, ok := f.startedAt("much-later"); ok {
		t.Error("a job still in the future started")
	}
}

// TestTransientErrorRetried: while the isolator is unavailable, the head of
// the queue is retried with backoff and the jobs behind it wait, so start
// order holds; then all start.
func TestTransientErrorRetried(t *testing.T) {
	f := newFake()
	f.fail = func(id string, call int) error {
		if id == "first" && call <= 3 {
			return errdefs.Errorf(errdefs.ErrUnavailable, "isolator down")
		}
		return nil
	}
	s := run(t, t.TempDir(), f, nil)
	schedule(t, s, "first", "1s")
	schedule(t, s, "second", "1s") // due a little after first
	waitFor(t, 5*time.Second, "both to start", func() bool { _, st := f.snapshot(); return len(st) == 2 })
	calls, started := f.snapshot()
	if !slices.Equal(started, []string{"first", "second"}) || calls["first"] != 4 || calls["second"] != 1 {
		t.Fatalf("started %v with calls %v; want first (4 calls) then second (1)", started, calls)
	}
	waitFor(t, time.Second, "the queue to empty", func() bool { return len(queuedIDs(t, s)) == 0 })
}

// TestPermanentErrorDropped: a job the isolator no longer knows, or that was
// canceled there, is dropped after one try and does not hold up the rest.
func TestPermanentErrorDropped(t *testing.T) {
	f := newFake()
	f.fail = func(id string, _ int) error {
		switch id {
		case "unknown":
			return errdefs.Errorf(errdefs.ErrNotFound, "job unknown not found")
		case "canceled":
			return errdefs.Errorf(errdefs.ErrFailedPrecondition, "job canceled is CANCELED")
		}
		return nil
	}
	s := run(t, t.TempDir(), f, nil)
	for _, id := range []string{"unknown", "canceled", "ok"} {
		schedule(t, s, id, "1s")
	}
	waitFor(t, 3*time.Second, "ok to start", func() bool { _, ok := f.startedAt("ok"); return ok })
	waitFor(t, time.Second, "the queue to empty", func() bool { return len(queuedIDs(t, s)) == 0 })
	time.Sleep(300 * time.Millisecond)
	if calls, _ := f.snapshot(); calls["unknown"] != 1 || calls["canceled"] != 1 {
		t.Fatalf("calls %v, want one each for the dropped jobs", calls)
	}
}

func TestScheduleIdempotentAndValidated(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	s := run(t, t.TempDir(), newFake(), now)
	first, err := s.Schedule(bg, "j", "1h")
	if err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(time.Minute)) // a retried call comes later; the instant stays
	again, err := s.Schedule(bg, "j", "1h")
	if err != nil || again != first {
		t.Fatalf("repeat Schedule = %+v, %v; want %+v", again, err, first)
	}
	if _, err := s.Schedule(bg, "j", "2h"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("Schedule with another input: %v, want already exists", err)
	}
	for _, id := range []string{"", "../x", "a b", "-x", string(make([]byte, 200))} {
		if _, err := s.Schedule(bg, id, "1h"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("job id %q: %v, want invalid argument", id, err)
		}
	}
	for _, in := range []string{"", "-5m", "0s", "5 minutes", "1e3h", "2024-02-30T10:00:00", "2000-01-01T00:00:00Z", "400d"} {
		if _, err := s.Schedule(bg, "k", in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("input %q: %v, want invalid argument", in, err)
		}
	}
	if got := queuedIDs(t, s); !slices.Equal(got, []string{"j"}) {
		t.Errorf("queue %v, want [j]", got)
	}
}
