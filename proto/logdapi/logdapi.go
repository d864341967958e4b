// Package logdapi is logd's Go interface, with the gRPC client that
// implements it over logd's socket and the gRPC server that wraps an
// implementation.
package logdapi

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
)

// Record is one piece of a job's output.
type Record struct {
	Stream jobletv1.Stream
	Data   []byte
	Offset int64 // bytes of the log (both streams) before Data
}

// Stat is the size and state of a job's log.
type Stat struct {
	Size   int64
	Closed bool
	Exists bool
}

// Logd keeps job output.
type Logd interface {
	// Append adds records to a job's log and, with eof, closes it. A record
	// whose Offset is below the log's size has been written before and is
	// skipped (the part of it that is new is kept), so a writer may resend
	// after a failure. A record past the end is an ErrFailedPrecondition.
	Append(ctx context.Context, jobID string, recs []Record, eof bool) (size int64, err error)
	// Read calls fn for each record from offset on; with follow it waits for
	// more until the log is closed or ctx is done. An unknown job is
	// ErrNotFound unless follow is set, in which case Read waits for it.
	Read(ctx context.Context, jobID string, offset int64, follow bool, fn func(Record) error) error
	// Stat reports on a job's log.
	Stat(ctx context.Context, jobID string) (Stat, error)
}

// NewClient returns a Logd that calls logd over cc.
func NewClient(cc grpc.ClientConnInterface) Logd {
	return client{c: logdv1.NewLogdClient(cc), cc: cc}
}

type client struct {
	c  logdv1.LogdClient
	cc grpc.ClientConnInterface // for Drain, which dials logd's socket itself
}

func (c client) Append(ctx context.Context, jobID string, recs []Record, eof bool) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.c.Write(ctx)
	if err != nil {
		return 0, errdefs.FromGRPC(err)
	}
	for _, r := range recs {
		if err := st.Send(&logdv1.WriteRequest{JobId: jobID, Offset: r.Offset, Stream: r.Stream, Data: r.Data}); err != nil {
			break // the real error comes from CloseAndRecv
		}
	}
	if eof {
		_ = st.Send(&logdv1.WriteRequest{JobId: jobID, Offset: -1, Eof: true})
	}
	resp, err := st.CloseAndRecv()
	return resp.GetSize(), errdefs.FromGRPC(err)
}

func (c client) Read(ctx context.Context, jobID string, offset int64, follow bool, fn func(Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.c.Read(ctx, &logdv1.ReadRequest{JobId: jobID, FromOffset: offset, Follow: follow})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	for {
		ch, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		if err := fn(Record{Stream: ch.GetStream(), Data: ch.GetData(), Offset: ch.GetOffset()}); err != nil {
			return err
		}
	}
}

func (c client) Stat(ctx context.Context, jobID string) (Stat, error) {
	r, err := c.c.Stat(ctx, &logdv1.StatRequest{JobId: jobID})
	return Stat{Size: r.GetSize(), Closed: r.GetClosed(), Exists: r.GetExists()}, errdefs.FromGRPC(err)
}

// Register serves impl on s.
func Register(s grpc.ServiceRegistrar, impl Logd) {
	logdv1.RegisterLogdServer(s, server{impl: impl})
}

type server struct {
	logdv1.UnimplementedLogdServer
	impl Logd
}

// Write batches what arrives and appends it; a batch is appended when the
// stream ends or grows past a few hundred KiB.
func (s server) Write(st logdv1.Logd_WriteServer) error {
	const flushAt = 256 << 10
	var (
		jobID   string
		batch   []Record
		pending int
		size    int64
		eof     bool
	)
	flush := func() error {
		if len(batch) == 0 && !eof {
			return nil
		}
		n, err := s.impl.Append(st.Context(), jobID, batch, eof)
		if err != nil {
			return err
		}
		size, batch, pending = n, batch[:0], 0
		return nil
	}
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if jobID == "" {
			jobID = m.GetJobId()
		} else if m.GetJobId() != jobID {
			return errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrInvalidArgument, "one write stream carries one job"))
		}
		if m.GetEof() {
			eof = true
			continue
		}
		batch = append(batch, Record{Stream: m.GetStream(), Data: m.GetData(), Offset: m.GetOffset()})
		if pending += len(m.GetData()); pending >= flushAt {
			if err := flush(); err != nil {
				return errdefs.ToGRPC(err)
			}
		}
	}
	if jobID == "" {
		return st.SendAndClose(&logdv1.WriteResponse{})
	}
	if err := flush(); err != nil {
		return errdefs.ToGRPC(err)
	}
	return st.SendAndClose(&logdv1.WriteResponse{Size: size})
}

func (s server) Read(r *logdv1.ReadRequest, st logdv1.Logd_ReadServer) error {
	err := s.impl.Read(st.Context(), r.GetJobId(), r.GetFromOffset(), r.GetFollow(), func(rec Record) error {
		return st.Send(&jobletv1.LogChunk{Stream: rec.Stream, Data: rec.Data, Offset: rec.Offset})
	})
	return errdefs.ToGRPC(err)
}

func (s server) Stat(ctx context.Context, r *logdv1.StatRequest) (*logdv1.StatResponse, error) {
	st, err := s.impl.Stat(ctx, r.GetJobId())
	return &logdv1.StatResponse{Size: st.Size, Closed: st.Closed, Exists: st.Exists}, errdefs.ToGRPC(err)
}
