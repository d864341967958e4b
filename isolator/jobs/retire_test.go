package jobs

import (
	"context"
	"runtime"
	"testing"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// An ended job is retired: only its final record stays, and every call
// answers for it exactly as before, also after a restart.
func TestEndedJobsAreRetired(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	id := f.run("sh", "-c", "exit 3").GetId()
	want := f.wait(id)
	f.reg.mu.Lock()
	_, live := f.reg.jobs[id]
	_, retired := f.reg.ended[id]
	f.reg.mu.Unlock()
	if live || !retired {
		t.Fatalf("ended job %s: still in jobs %v, retired %v", id, live, retired)
	}
	if want.GetState() != failed || want.GetExitCode() != 3 || want.GetEndTime() == nil {
		t.Fatalf("record of the ended job: %v", want)
	}
	check := func(what string, got *jobletv1.Job, err error) {
		t.Helper()
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("%s: %v, %v; want %v", what, got, err, want)
		}
	}
	got, err := f.reg.Get(ctx, id)
	check("Get", got, err)
	got, err = f.reg.Wait(ctx, id, 0)
	check("Wait", got, err)
	got, err = f.reg.Stop(ctx, id)
	check("Stop", got, err)
	got, err = f.reg.StartScheduled(ctx, id, 0)
	check("StartScheduled (a repeated hand-off)", got, err)
	list, err := f.reg.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("List: %v, %v", list, err)
	}
	check("List", list[0], nil)
	// A record loaded at start is retired too.
	ctxShut, cancel := context.WithCancel(ctx)
	cancel()
	_ = f.reg.Shutdown(ctxShut)
	f.open()
	f.reg.mu.Lock()
	_, retired = f.reg.ended[id]
	f.reg.mu.Unlock()
	got, err = f.reg.Get(ctx, id)
	if !retired || err != nil || !proto.Equal(got, want) {
		t.Fatalf("after a restart: retired %v, Get %v, %v; want %v", retired, got, err, want)
	}
}

// The registry's memory does not grow much with its history: about 3.7
// KiB in 35 objects stayed per ended job before jobs were retired; now a
// few hundred bytes (the bound also covers what the fixture's fakes keep
// per job).
func TestEndedJobsKeepLittleMemory(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Log = zerolog.Nop() })
	for range 10 {
		f.wait(f.run("true").GetId())
	}
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	const n = 200
	before := heap()
	for range n {
		f.wait(f.run("true").GetId())
	}
	per := (heap() - before) / n
	t.Logf("%d bytes kept per ended job", per)
	if per > 1536 {
		t.Errorf("%d bytes kept per ended job, want at most 1536", per)
	}
}
