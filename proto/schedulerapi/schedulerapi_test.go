package schedulerapi

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// fake is a Scheduler that answers from fixed data.
type fake struct{ entries []Entry }

func (f *fake) Schedule(_ context.Context, jobID, input string) (Entry, error) {
	if input == "bad" {
		return Entry{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "cannot read schedule %q", input)
	}
	e := Entry{JobID: jobID, Input: input, Due: time.Date(2025, 7, 20, 15, 30, 0, 5, time.UTC), Seq: uint64(len(f.entries) + 1)}
	f.entries = append(f.entries, e)
	return e, nil
}

func (f *fake) Cancel(_ context.Context, jobID string) (bool, error) {
	if jobID == "broken" {
		return false, errors.New("disk on fire") // no kind: must not leak
	}
	return jobID == f.entries[0].JobID, nil
}

func (f *fake) List(context.Context) ([]Entry, error) { return f.entries, nil }

func dial(t *testing.T, impl Scheduler) Scheduler {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	Register(s, impl)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return NewClient(cc)
}

func TestAcrossTheWire(t *testing.T) {
	c := dial(t, &fake{})
	ctx := context.Background()
	e, err := c.Schedule(ctx, "j1", "1h")
	want := Entry{JobID: "j1", Input: "1h", Due: time.Date(2025, 7, 20, 15, 30, 0, 5, time.UTC), Seq: 1}
	if err != nil || e != want {
		t.Fatalf("Schedule = %+v, %v; want %+v", e, err, want)
	}
	if _, err := c.Schedule(ctx, "j2", "bad"); !errors.Is(err, errdefs.ErrInvalidArgument) || err.Error() != `cannot read schedule "bad"` {
		t.Fatalf("bad input: %v", err)
	}
	if pending, err := c.Cancel(ctx, "j1"); !pending || err != nil {
		t.Fatalf("Cancel(j1) = %v, %v", pending, err)
	}
	if pending, err := c.Cancel(ctx, "other"); pending || err != nil {
		t.Fatalf("Cancel(other) = %v, %v", pending, err)
	}
	if _, err := c.Cancel(ctx, "broken"); err == nil || err.Error() == "disk on fire" {
		t.Fatalf("an error of no kind crossed the wire as %v", err)
	}
	es, err := c.List(ctx)
	if err != nil || len(es) != 1 || es[0] != want {
		t.Fatalf("List = %+v, %v", es, err)
	}
}
