package service

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/daemon"
	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/schedulerapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// requiresRoot skips tests that talk to the socket: it accepts root only.
func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("the scheduler's socket accepts root only; run the tests as root")
	}
}

// TestRunThroughSocket runs the daemon's service as it runs in production,
// with no isolator listening, and calls it through its socket: errors keep
// their kind, and a due job stays queued (not lost, not dropped) while the
// isolator cannot be reached.
func TestRunThroughSocket(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Paths.RunDir, cfg.Paths.StateDir = dir, dir
	l, err := transport.Listen(cfg.SocketPath("scheduler"), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, daemon.Env{Name: "scheduler", Config: cfg, Log: zerolog.Nop(), Listener: l}) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		l.Close()
	}()
	cc, err := transport.Dial(cfg.SocketPath("scheduler"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := schedulerapi.NewClient(cc)
	bg := context.Background()

	for _, name := range []string{"", "joblet.scheduler.v1.Scheduler"} {
		hc, err := healthpb.NewHealthClient(cc).Check(bg, &healthpb.HealthCheckRequest{Service: name})
		if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v", name, hc, err)
		}
	}

	before := time.Now()
	e, err := c.Schedule(bg, "j1", "1s")
	if err != nil {
		t.Fatal(err)
	}
	if e.JobID != "j1" || e.Input != "1s" || e.Seq == 0 || e.Due.Before(before.Add(time.Second)) || e.Due.After(time.Now().Add(time.Second)) {
		t.Fatalf("entry %+v", e)
	}
	if _, err := c.Schedule(bg, "j1", "2s"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("reschedule with another input: %v", err)
	}
	_, err = c.Schedule(bg, "j2", "5 minutes")
	if !errors.Is(err, errdefs.ErrInvalidArgument) || err.Error() == "" {
		t.Fatalf("bad spec through the socket: %v", err)
	}
	t.Logf("user sees: %v", err)

	time.Sleep(1500 * time.Millisecond) // j1 is due; the isolator is unreachable
	es, err := c.List(bg)
	if err != nil || len(es) != 1 || es[0].JobID != "j1" || !es[0].Due.Equal(e.Due) {
		t.Fatalf("List = %+v, %v; want j1 still queued", es, err)
	}
	if pending, err := c.Cancel(bg, "j1"); !pending || err != nil {
		t.Fatalf("Cancel = %v, %v", pending, err)
	}
	if pending, err := c.Cancel(bg, "j1"); pending || err != nil {
		t.Fatalf("second Cancel = %v, %v", pending, err)
	}
	if es, err := c.List(bg); err != nil || len(es) != 0 {
		t.Fatalf("List after cancel = %+v, %v", es, err)
	}
}
