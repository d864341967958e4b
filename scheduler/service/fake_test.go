package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/scheduler/queue"
)

// fakeIsolator is a Starter that behaves like the isolator's side of the
// hand-off: idempotent by job id (a second Start of a started job is a
// success and starts nothing), with errors injected per call.
type fakeIsolator struct {
	mu      sync.Mutex
	calls   map[string]int       // Start calls per job
	started []string             // jobs really started, in order
	at      map[string]time.Time // when each job really started
	delay   map[string]time.Duration
	fail    func(jobID string, call int) error // nil: every call succeeds
}

func newFake() *fakeIsolator {
	return &fakeIsolator{calls: map[string]int{}, at: map[string]time.Time{}, delay: map[string]time.Duration{}}
}

func (f *fakeIsolator) Start(_ context.Context, jobID string, delay time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[jobID]++
	if f.fail != nil {
		if err := f.fail(jobID, f.calls[jobID]); err != nil {
			return err
		}
	}
	if _, ok := f.at[jobID]; ok {
		return nil // already started: idempotent success
	}
	f.started = append(f.started, jobID)
	f.at[jobID] = time.Now()
	f.delay[jobID] = delay
	return nil
}

func (f *fakeIsolator) snapshot() (calls map[string]int, started []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	calls = make(map[string]int, len(f.calls))
	for k, v := range f.calls {
		calls[k] = v
	}
	return calls, append([]string(nil), f.started...)
}

func (f *fakeIsolator) startedAt(jobID string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.at[jobID]
	return t, ok
}

// instance is a Scheduler with its loop running on the queue in a directory.
type instance struct {
	*Scheduler
	stop func() // stops the loop and waits for it
}

func run(t *testing.T, dir string, st Starter, now func() time.Time) *instance {
	t.Helper()
	q, err := queue.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := New(q, st, Options{Log: zerolog.Nop(), Now: now, Location: time.UTC})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Loop(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &instance{Scheduler: s, stop: stop}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
