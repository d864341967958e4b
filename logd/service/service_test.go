package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/daemon"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// logd is a running service and a client of it.
type logd struct {
	logdapi.Logd
	raw    logdv1.LogdClient
	health healthpb.HealthClient
	stop   func() // stops the service and waits for Run to return
	sock   string
}

// start runs the service on a socket in dir, with its state in dir too.
func start(tb testing.TB, dir string) *logd {
	tb.Helper()
	cfg := config.Default()
	cfg.Paths.RunDir, cfg.Paths.StateDir = dir, dir
	cfg.Gateway.UID = os.Getuid()
	sock := cfg.SocketPath("logd")
	l, err := transport.Listen(sock, os.Getgid())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, daemon.Env{Name: "logd", Config: cfg, Log: zerolog.Nop(), Listener: l}) }()
	cc, err := transport.Dial(sock)
	if err != nil {
		tb.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cc.Close()
		cancel()
		if err := <-ran; err != nil {
			tb.Errorf("Run: %v", err)
		}
		l.Close()
	}
	tb.Cleanup(stop)
	return &logd{Logd: logdapi.NewClient(cc), raw: logdv1.NewLogdClient(cc), health: healthpb.NewHealthClient(cc), stop: stop, sock: sock}
}

// readAll reads a job's log from the start and checks the offsets line up.
func readAll(c logdapi.Logd, id string, follow bool) ([]byte, error) {
	var b []byte
	err := c.Read(context.Background(), id, 0, follow, func(r logdapi.Record) error {
		if r.Offset != int64(len(b)) {
			return fmt.Errorf("record at %d, want %d", r.Offset, len(b))
		}
		b = append(b, r.Data...)
		return nil
	})
	return b, err
}

func TestThroughSocket(t *testing.T) {
	dir := t.TempDir()
	d := start(t, dir)
	ctx := context.Background()

	for _, name := range []string{"", "joblet.logd.v1.Logd"} {
		hc, err := d.health.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v", name, hc, err)
		}
	}

	type result struct {
		b   []byte
		err error
	}
	follower := make(chan result, 1)
	go func() { b, err := readAll(d, "42", true); follower <- result{b, err} }()

	n, err := d.Append(ctx, "42", []logdapi.Record{
		{Stream: jobletv1.Stream_STREAM_STDOUT, Offset: 0, Data: []byte("hello ")},
		{Stream: jobletv1.Stream_STREAM_STDERR, Offset: 6, Data: []byte("world")},
	}, false)
	if err != nil || n != 11 {
		t.Fatalf("append: %d %v", n, err)
	}
	// The error kinds come through the socket as themselves.
	_, err = d.Append(ctx, "42", []logdapi.Record{{Stream: jobletv1.Stream_STREAM_STDOUT, Offset: 20, Data: []byte("x")}}, false)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("gap: %v", err)
	}
	if _, err = d.Stat(ctx, "../42"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad id: %v", err)
	}
	if err = d.Read(ctx, "43", 0, false, func(logdapi.Record) error { return nil }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}

	if _, err := d.Append(ctx, "42", []logdapi.Record{{Stream: jobletv1.Stream_STREAM_STDOUT, Offset: 6, Data: []byte("world!")}}, true); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-follower:
		if r.err != nil || string(r.b) != "hello world!" {
			t.Fatalf("follower got %q, %v", r.b, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follower did not end at eof")
	}
	st, err := d.Stat(ctx, "42")
	if err != nil || st != (logdapi.Stat{Size: 12, Closed: true, Exists: true}) {
		t.Fatalf("stat %+v %v", st, err)
	}

	// After a restart the log is the same.
	d.stop()
	d = start(t, dir)
	if got, err := readAll(d, "42", true); err != nil || string(got) != "hello world!" {
		t.Fatalf("after restart: %q, %v", got, err)
	}
	if st2, _ := d.Stat(ctx, "42"); st2 != st {
		t.Fatalf("stat after restart %+v", st2)
	}
	if _, err := os.Stat(filepath.Join(dir, "logd", "42.log")); err != nil {
		t.Fatalf("log not under the state dir: %v", err)
	}
}

// A follower whose client never reads must not hold up the job's writer.
func TestStuckFollowerDoesNotBlockAppend(t *testing.T) {
	d := start(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck, err := d.raw.Read(ctx, &logdv1.ReadRequest{JobId: "7", Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the stuck follower has its first chunk queued, so it is
	// really in the server before the flood starts.
	if _, err := d.Append(ctx, "7", []logdapi.Record{{Stream: jobletv1.Stream_STREAM_STDOUT, Data: []byte("first")}}, false); err != nil {
		t.Fatal(err)
	}
	if c, err := stuck.Recv(); err != nil || string(c.GetData()) != "first" {
		t.Fatalf("first chunk: %v %v", c, err)
	}

	const total = 20 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
	want := []byte("first")
	appended := make(chan error, 1)
	go func() {
		off := int64(len("first"))
		for off < total {
			var batch []logdapi.Record
			for range 32 {
				batch = append(batch, logdapi.Record{Stream: jobletv1.Stream_STREAM_STDOUT, Offset: off, Data: chunk})
				off += int64(len(chunk))
			}
			if _, err := d.Append(ctx, "7", batch, false); err != nil {
				appended <- err
				return
			}
		}
		_, err := d.Append(ctx, "7", nil, true)
		appended <- err
	}()
	for len(want) < total {
		want = append(want, chunk...)
	}
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("appends blocked behind a follower that does not read")
	}
	if got, err := readAll(d, "7", true); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d: %v", len(got), len(want), err)
	}
	// The stuck follower is still there and still gets everything, in order.
	var got []byte
	got = append(got, "first"...)
	for {
		c, err := stuck.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c.GetData()...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stuck follower got %d bytes, want %d", len(got), len(want))
	}
}
