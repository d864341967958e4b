package logdapi

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi/handover"
)

// Pipe is the read end of a pipe that carries one stream of a job's output.
type Pipe struct {
	Stream jobletv1.Stream
	File   *os.File
}

// Drainer is a Logd that can take a job's output pipes and move their
// contents into the log itself, so that the output does not pass through
// the caller. logd's client implements it, and so does logd's store.
type Drainer interface {
	// Drain moves what arrives on pipes into jobID's log until every pipe
	// is at end of file, then closes the log and returns its size. The
	// caller keeps its pipes (Drain does not close them). After a failure
	// the bytes not yet in the log are still in the pipes, so Drain may be
	// called again. ErrDrainUnsupported means this logd cannot take the
	// pipes; the caller then reads them and Appends.
	Drain(ctx context.Context, jobID string, pipes []Pipe) (size int64, err error)
}

// ErrDrainUnsupported is Drain's answer when the pipes cannot be handed to
// logd: an older logd, or a client that does not know logd's socket.
var ErrDrainUnsupported = handover.ErrUnsupported

// The pipes travel on a connection of their own to logd's socket, since a
// gRPC stream cannot carry descriptors: see package handover, which speaks
// the client side without gRPC (a job's shim uses it directly).
const (
	pipesMagic      = handover.Magic
	pipesTaken      = handover.Taken
	pipesRefused    = handover.Refused
	maxDrainMessage = handover.MaxMessage
)

// Drain implements Drainer for a client made with NewClient over a
// connection from transport.Dial, whose target names logd's socket.
func (c client) Drain(ctx context.Context, jobID string, pipes []Pipe) (int64, error) {
	path, ok := socketOf(c.cc)
	if !ok {
		return 0, ErrDrainUnsupported
	}
	hp := make([]handover.Pipe, len(pipes))
	for i, p := range pipes {
		hp[i] = handover.Pipe{Stream: int32(p.Stream), File: p.File}
	}
	return handover.Drain(ctx, path, jobID, hp)
}

// socketOf returns the socket path of a connection made by transport.Dial,
// whose target is "passthrough:///" followed by the path.
func socketOf(cc grpc.ClientConnInterface) (string, bool) {
	t, ok := cc.(interface{ Target() string })
	if !ok {
		return "", false
	}
	path, ok := strings.CutPrefix(t.Target(), "passthrough:///")
	return path, ok && strings.HasPrefix(path, "/")
}

// frame encodes m as handover.Frame does.
func frame(m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", m, err)
	}
	return handover.Frame(b), nil
}

// readFramed reads one message written by frame.
func readFramed(r io.Reader, m proto.Message) error {
	b, err := handover.ReadFrame(r)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}
