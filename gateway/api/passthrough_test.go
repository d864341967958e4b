package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/joblet-dev/joblet/gateway/internal/fake"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// serve runs srv on an in-memory listener and returns a connection to it.
func serve(t *testing.T, srv *grpc.Server) *grpc.ClientConn {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// passthroughGateway is a JobService that reads logs from a fake logd over
// gRPC and passes its chunks through, as the real gateway does.
func passthroughGateway(t *testing.T) (jobletv1.JobServiceClient, *fake.Isolator, *fake.Logd) {
	t.Helper()
	iso, logs := &fake.Isolator{}, &fake.Logd{}
	logdSrv := grpc.NewServer()
	logdapi.Register(logdSrv, logs)
	logdCC := serve(t, logdSrv)
	gw := grpc.NewServer(grpc.ForceServerCodecV2(Codec{}))
	jobletv1.RegisterJobServiceServer(gw, New(iso, logdapi.NewClient(logdCC), WithLogdConn(logdCC)))
	return jobletv1.NewJobServiceClient(serve(t, gw)), iso, logs
}

func collect(t *testing.T, st grpc.ServerStreamingClient[jobletv1.LogChunk]) ([]*jobletv1.LogChunk, error) {
	t.Helper()
	var out []*jobletv1.LogChunk
	for {
		c, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
}

func TestGetJobLogsPassthrough(t *testing.T) {
	c, iso, logs := passthroughGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := iso.Run(ctx, &jobletv1.JobSpec{Command: "x"})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	recs := []logdapi.Record{
		{Stream: jobletv1.Stream_STREAM_STDOUT, Data: []byte("hello\n")},
		{Stream: jobletv1.Stream_STREAM_STDERR, Data: []byte("oops\n")},
		{Stream: jobletv1.Stream_STREAM_STDOUT, Data: big},
	}
	if _, err := logs.Append(ctx, j.GetId(), recs[:2], false); err != nil {
		t.Fatal(err)
	}

	// A follower started before the rest of the output gets all of it and
	// ends when the log is closed.
	st, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: j.GetId(), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := logs.Append(ctx, j.GetId(), recs[2:], true); err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, st)
	if err != nil {
		t.Fatalf("follow: %v", err)
	}
	var off int64
	if len(got) != len(recs) {
		t.Fatalf("got %d chunks, want %d", len(got), len(recs))
	}
	for i, r := range recs {
		g := got[i]
		if g.GetStream() != r.Stream || g.GetOffset() != off || !bytes.Equal(g.GetData(), r.Data) {
			t.Errorf("chunk %d: stream %v offset %d, %d bytes; want stream %v offset %d, %d bytes",
				i, g.GetStream(), g.GetOffset(), len(g.GetData()), r.Stream, off, len(r.Data))
		}
		off += int64(len(r.Data))
	}
}

func TestGetJobLogsPassthroughErrors(t *testing.T) {
	c, iso, _ := passthroughGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A job the isolator does not know.
	st, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: "99"})
	if err == nil {
		_, err = collect(t, st)
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown job: %v, want NotFound", err)
	}

	// A known job with no output yet: an empty log, not an error (logd's
	// NotFound has come through the pass-through path as a NotFound).
	j, err := iso.Run(ctx, &jobletv1.JobSpec{Command: "x"})
	if err != nil {
		t.Fatal(err)
	}
	st, err = c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: j.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := collect(t, st); err != nil || len(got) != 0 {
		t.Errorf("job without output: %d chunks, %v; want none, nil", len(got), err)
	}
}
