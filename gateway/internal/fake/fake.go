// Package fake has in-memory implementations of the helpers' Go interfaces
// (isolatorapi.Isolator, logdapi.Logd, netdapi.Netd) that keep their
// documented contracts, so the gateway can be tested without root or running
// helpers.
package fake

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// Isolator is a job registry that runs nothing: Run records a RUNNING job.
type Isolator struct {
	mu   sync.Mutex
	last int
	jobs map[string]*jobletv1.Job
	// Fail, when set, is returned by every call.
	Fail error
	// uploads is what RunWithUploads received, by job id (uploads.go).
	uploads map[string]Upload
	// Waits is the max of every Wait call, in order.
	Waits []time.Duration
}

var _ isolatorapi.Isolator = (*Isolator)(nil)

// Run implements isolatorapi.Isolator.
func (f *Isolator) Run(_ context.Context, spec *jobletv1.JobSpec) (*jobletv1.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return nil, f.Fail
	}
	if f.jobs == nil {
		f.jobs = map[string]*jobletv1.Job{}
	}
	f.last++
	now := timestamppb.New(time.Now())
	j := &jobletv1.Job{
		Id: strconv.Itoa(f.last), Command: spec.GetCommand(), Args: spec.GetArgs(),
		State: jobletv1.JobState_JOB_STATE_RUNNING, CreateTime: now, StartTime: now,
		Limits: spec.GetLimits(), Name: spec.GetName(),
	}
	f.jobs[j.Id] = j
	return proto.CloneOf(j), nil
}

// Get implements isolatorapi.Isolator.
func (f *Isolator) Get(_ context.Context, id string) (*jobletv1.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, err := f.lookup(id)
	if err != nil {
		return nil, err
	}
	return proto.CloneOf(j), nil
}

// Wait implements isolatorapi.Isolator: it records max and answers at
// once, as when the job has ended (the registry's own tests cover waiting).
func (f *Isolator) Wait(_ context.Context, id string, max time.Duration) (*jobletv1.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Waits = append(f.Waits, max)
	j, err := f.lookup(id)
	if err != nil {
		return nil, err
	}
	return proto.CloneOf(j), nil
}

// List implements isolatorapi.Isolator.
func (f *Isolator) List(context.Context) ([]*jobletv1.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return nil, f.Fail
	}
	var out []*jobletv1.Job
	for _, j := range f.jobs {
		out = append(out, proto.CloneOf(j))
	}
	slices.SortFunc(out, func(a, b *jobletv1.Job) int {
		x, _ := strconv.Atoi(a.Id)
		y, _ := strconv.Atoi(b.Id)
		return x - y
	})
	return out, nil
}

// Stop implements isolatorapi.Isolator: a running job becomes STOPPED, an
// ended one is returned unchanged.
func (f *Isolator) Stop(_ context.Context, id string) (*jobletv1.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, err := f.lookup(id)
	if err != nil {
		return nil, err
	}
	if j.State == jobletv1.JobState_JOB_STATE_RUNNING {
		j.State = jobletv1.JobState_JOB_STATE_STOPPED
		j.EndTime = timestamppb.New(time.Now())
		j.ExitCode, j.Signal = 128+15, 15
	}
	return proto.CloneOf(j), nil
}

// StartScheduled implements isolatorapi.Isolator: a SCHEDULED job becomes
// RUNNING; any other is returned unchanged. The gateway never calls it (the
// scheduler does); it is here to keep the contract.
func (f *Isolator) StartScheduled(_ context.Context, id string, _ time.Duration) (*jobletv1.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, err := f.lookup(id)
	if err != nil {
		return nil, err
	}
	if j.State == jobletv1.JobState_JOB_STATE_SCHEDULED {
		j.State = jobletv1.JobState_JOB_STATE_RUNNING
		j.StartTime = timestamppb.New(time.Now())
	}
	return proto.CloneOf(j), nil
}

// SetState moves a job to state, as the real isolator does when it ends.
func (f *Isolator) SetState(id string, state jobletv1.JobState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[id].State = state
}

func (f *Isolator) lookup(id string) (*jobletv1.Job, error) {
	if f.Fail != nil {
		return nil, f.Fail
	}
	j, ok := f.jobs[id]
	if !ok {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "job %s not found", id)
	}
	return j, nil
}

// Logd keeps logs in memory and wakes followers on every change.
type Logd struct {
	mu      sync.Mutex
	logs    map[string]*jobLog
	changed chan struct{} // closed and replaced on every change
}

type jobLog struct {
	recs   []logdapi.Record
	size   int64
	closed bool
}

var _ logdapi.Logd = (*Logd)(nil)

// Append implements logdapi.Logd. Records are placed at the end of the log
// whatever their Offset says; the gateway never writes.
func (f *Logd) Append(_ context.Context, jobID string, recs []logdapi.Record, eof bool) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	l := f.logs[jobID]
	if l == nil {
		l = &jobLog{}
		f.logs[jobID] = l
	}
	if l.closed {
		return l.size, errdefs.Errorf(errdefs.ErrFailedPrecondition, "log of job %s is closed", jobID)
	}
	for _, r := range recs {
		r.Offset = l.size
		r.Data = slices.Clone(r.Data)
		l.recs = append(l.recs, r)
		l.size += int64(len(r.Data))
	}
	l.closed = eof
	close(f.changed)
	f.changed = make(chan struct{})
	return l.size, nil
}

// Read implements logdapi.Logd, in whole records: a record that starts
// before offset but ends after it is sent whole.
func (f *Logd) Read(ctx context.Context, jobID string, offset int64, follow bool, fn func(logdapi.Record) error) error {
	next := 0
	for {
		f.mu.Lock()
		f.init()
		l := f.logs[jobID]
		if l == nil && !follow {
			f.mu.Unlock()
			return errdefs.Errorf(errdefs.ErrNotFound, "no log for job %s", jobID)
		}
		var (
			batch  []logdapi.Record
			closed bool
		)
		if l != nil {
			batch, closed = l.recs[next:], l.closed
			next = len(l.recs)
		}
		wake := f.changed
		f.mu.Unlock()
		for _, r := range batch {
			if r.Offset+int64(len(r.Data)) <= offset {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if !follow || closed {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stat implements logdapi.Logd.
func (f *Logd) Stat(_ context.Context, jobID string) (logdapi.Stat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	l := f.logs[jobID]
	if l == nil {
		return logdapi.Stat{}, nil
	}
	return logdapi.Stat{Size: l.size, Closed: l.closed, Exists: true}, nil
}

func (f *Logd) init() {
	if f.logs == nil {
		f.logs = map[string]*jobLog{}
		f.changed = make(chan struct{})
	}
}
