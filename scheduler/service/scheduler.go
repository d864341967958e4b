package service

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/proto/schedulerapi"
	"github.com/joblet-dev/joblet/scheduler/queue"
	"github.com/joblet-dev/joblet/scheduler/spec"
)

const (
	// maxSleep bounds every wait of the firing loop. Go timers run on the
	// monotonic clock, so one long timer would ignore a step of the wall
	// clock (NTP, an admin's `date -s`) and fire an absolute schedule late
	// by the size of the step; waking at least this often and re-reading the
	// wall clock bounds that error to maxSleep.
	maxSleep = time.Second
	// startTimeout bounds one hand-off to the isolator.
	startTimeout = 30 * time.Second
	// minBackoff and maxBackoff bound the wait before retrying after a
	// transient start error; it doubles on each failure in a row.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// maxBatch bounds how many started entries are removed from the queue in
	// one write, and so how many are handed off again after a crash.
	maxBatch = 64
)

// validJobID is the isolator's job id alphabet: a single safe path element.
var validJobID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Options configure a Scheduler. Zero values mean the defaults.
type Options struct {
	Log      zerolog.Logger
	Horizon  time.Duration    // how far ahead a job may be scheduled; spec.DefaultHorizon
	Location *time.Location   // zone of zone-less times; time.Local
	Now      func() time.Time // the wall clock; time.Now (tests step it)
}

// Scheduler is the queue of jobs waiting for their time and the loop that
// starts each one through a Starter when it falls due. It implements
// schedulerapi.Scheduler.
type Scheduler struct {
	starter Starter
	log     zerolog.Logger
	horizon time.Duration
	loc     *time.Location
	now     func() time.Time
	wake    chan struct{} // the queue changed: recompute the next wake-up

	mu sync.Mutex
	q  *queue.Queue
}

// New returns a Scheduler over q. Nothing fires until Loop runs.
func New(q *queue.Queue, starter Starter, o Options) *Scheduler {
	s := &Scheduler{starter: starter, log: o.Log, horizon: o.Horizon, loc: o.Location, now: o.Now,
		wake: make(chan struct{}, 1), q: q}
	if s.horizon <= 0 {
		s.horizon = spec.DefaultHorizon
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Schedule implements schedulerapi.Scheduler. The input is read against the
// wall clock of this call, so a relative delay is fixed to an instant here.
func (s *Scheduler) Schedule(_ context.Context, jobID, input string) (schedulerapi.Entry, error) {
	if !validJobID.MatchString(jobID) {
		return schedulerapi.Entry{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid job id %q", truncate(jobID))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.q.Get(jobID); ok {
		if e.Input != input {
			return schedulerapi.Entry{}, errdefs.Errorf(errdefs.ErrAlreadyExists,
				"job %s is already scheduled with %q", jobID, e.Input)
		}
		return toAPI(e), nil
	}
	due, err := spec.Parse(input, s.now(), s.loc, s.horizon)
	if err != nil {
		return schedulerapi.Entry{}, err
	}
	e, _, err := s.q.Add(jobID, due, input)
	if err != nil {
		s.log.Error().Err(err).Str(logging.KeyJobID, jobID).Msg("cannot persist the schedule")
		return schedulerapi.Entry{}, storeError(err)
	}
	s.log.Info().Str(logging.KeyJobID, jobID).Str("input", input).Time("due", e.Due).Msg("scheduled")
	s.poke()
	return toAPI(e), nil
}

// Cancel implements schedulerapi.Scheduler.
func (s *Scheduler) Cancel(_ context.Context, jobID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.q.Remove(jobID)
	if err != nil {
		s.log.Error().Err(err).Str(logging.KeyJobID, jobID).Msg("cannot persist the cancel")
		return false, storeError(err)
	}
	if n > 0 {
		s.log.Info().Str(logging.KeyJobID, jobID).Msg("canceled")
		s.poke()
	}
	return n > 0, nil
}

// List implements schedulerapi.Scheduler.
func (s *Scheduler) List(context.Context) ([]schedulerapi.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	es := s.q.Entries()
	out := make([]schedulerapi.Entry, 0, len(es))
	for _, e := range es {
		out = append(out, toAPI(e))
	}
	return out, nil
}

func toAPI(e queue.Entry) schedulerapi.Entry {
	return schedulerapi.Entry{JobID: e.JobID, Input: e.Input, Due: e.Due, Seq: e.Seq}
}

// storeError is what a caller is told when the queue cannot be written; the
// cause is in the log.
func storeError(err error) error {
	if errors.Is(err, errdefs.ErrResourceExhausted) { // a full disk (queue.save)
		return err
	}
	return errdefs.Errorf(errdefs.ErrUnavailable, "the scheduler cannot save its queue")
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// poke wakes the loop without blocking; one pending wake-up is enough.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Loop starts jobs as they fall due until ctx is done. It first fires
// everything that fell due while the scheduler was down, then sleeps until
// the next due time, never longer than maxSleep, re-reading the wall clock
// on every wake-up. After a transient start error it backs off, and the
// queue waits behind the entry that failed so that start order is kept.
func (s *Scheduler) Loop(ctx context.Context) {
	// Since Go 1.23 a Reset timer never delivers a stale tick, so the timer
	// is simply Reset before each wait.
	timer := time.NewTimer(maxSleep)
	defer timer.Stop()
	var backoff time.Duration
	for {
		wake := s.wake
		err := s.fireDue(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if err != nil {
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			wait = backoff
			wake = nil // a new schedule does not cut the backoff short
			s.log.Warn().Err(err).Dur("retry_in", wait).Msg("start failed; will retry")
		} else {
			backoff = 0
			wait = s.untilNext()
		}
		var tick <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick:
		}
	}
}

// untilNext is how long to sleep before the next check: until the soonest
// due time, at most maxSleep, or -1 (until woken) when the queue is empty.
func (s *Scheduler) untilNext() time.Duration {
	s.mu.Lock()
	e, ok := s.q.Next()
	s.mu.Unlock()
	if !ok {
		return -1
	}
	return min(max(e.Due.Sub(s.now()), 0), maxSleep)
}

// fireDue starts every due entry, soonest first and, among entries due at
// the same instant, in submission order. It returns at the first transient
// error, leaving that entry and all after it queued.
func (s *Scheduler) fireDue(ctx context.Context) error {
	for {
		n, err := s.fireBatch(ctx)
		if err != nil || n == 0 {
			return err
		}
	}
}

// fireBatch hands off up to maxBatch due entries, one after the other, then
// removes the ones handed off (or dropped) from the queue in one write. It
// returns how many it removed.
func (s *Scheduler) fireBatch(ctx context.Context) (int, error) {
	s.mu.Lock()
	now := s.now()
	var due []queue.Entry
	for _, e := range s.q.Entries() {
		if e.Due.After(now) || len(due) == maxBatch {
			break
		}
		due = append(due, e)
	}
	s.mu.Unlock()

	var done []string
	var startErr error
	for _, e := range due {
		if !s.queued(e.JobID) {
			continue // canceled since the batch was taken
		}
		if startErr = s.fire(ctx, e); startErr != nil {
			break
		}
		done = append(done, e.JobID)
	}
	if len(done) == 0 {
		return 0, startErr
	}
	s.mu.Lock()
	n, err := s.q.Remove(done...)
	s.mu.Unlock()
	if err != nil {
		// The jobs started but are still queued: they are handed off again
		// on the retry, which the isolator treats as a success.
		return 0, errors.Join(startErr, fmt.Errorf("remove started jobs from the queue: %w", err))
	}
	return n, startErr
}

func (s *Scheduler) queued(jobID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.q.Get(jobID)
	return ok
}

// fire hands one entry to the Starter. It returns nil when the entry is done
// with (started, or dropped for good) and the error when it must be retried.
func (s *Scheduler) fire(ctx context.Context, e queue.Entry) error {
	delay := max(s.now().Sub(e.Due), 0)
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	err := s.starter.Start(sctx, e.JobID, delay)
	cancel()
	log := s.log.With().Str(logging.KeyJobID, e.JobID).Time("due", e.Due).Dur("delay", delay).Logger()
	switch {
	case err == nil:
		log.Info().Msg("started")
		return nil
	case isPermanent(err):
		log.Warn().Err(err).Msg("not started; dropped from the queue")
		return nil
	default:
		return fmt.Errorf("start job %s: %w", e.JobID, err)
	}
}
