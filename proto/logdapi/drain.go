package logdapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
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
var ErrDrainUnsupported = errors.New("logd cannot take the output pipes")

// The pipes travel on a connection of their own to logd's socket, since a
// gRPC stream cannot carry descriptors: the connection opens with
// pipesMagic (which no HTTP/2 client sends: they open with "PRI "), then a
// DrainRequest framed by its length, sent with the pipes as SCM_RIGHTS. It
// stays open while logd drains; logd answers with pipesTaken or
// pipesRefused at once, then with a DrainResult, framed the same way, and
// either side closing it ends the drain.
const pipesMagic = "JOBLET-PIPES/1\n"

// logd's first answer on a pipes connection, before the DrainResult: it
// took the pipes (and drains them until the result), or refused them.
const (
	pipesTaken   = '+'
	pipesRefused = '-'
)

// maxDrainMessage bounds a DrainRequest or DrainResult on the wire.
const maxDrainMessage = 64 << 10

// Drain implements Drainer for a client made with NewClient over a
// connection from transport.Dial, whose target names logd's socket.
func (c client) Drain(ctx context.Context, jobID string, pipes []Pipe) (int64, error) {
	path, ok := socketOf(c.cc)
	if !ok {
		return 0, ErrDrainUnsupported
	}
	req := &logdv1.DrainRequest{JobId: jobID}
	var fds []int
	for i, p := range pipes {
		fd, err := fdOf(p.File)
		if err != nil {
			return 0, err
		}
		fds = append(fds, fd)
		req.Pipes = append(req.Pipes, &logdv1.DrainPipe{Stream: p.Stream, Index: int32(i)})
	}
	msg, err := frame(req)
	if err != nil {
		return 0, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return 0, errdefs.Errorf(errdefs.ErrUnavailable, "connect to logd: %v", err)
	}
	uc := conn.(*net.UnixConn)
	defer uc.Close()
	stop := context.AfterFunc(ctx, func() { uc.Close() }) // logd sees the close and stops
	defer stop()
	if _, err := uc.Write([]byte(pipesMagic)); err != nil {
		return 0, sendErr(ctx, err)
	}
	// The descriptors go with the request's first byte; the kernel holds
	// them in the socket until logd reads that byte, whatever else happens.
	if _, _, err := uc.WriteMsgUnix(msg, syscall.UnixRights(fds...), nil); err != nil {
		return 0, sendErr(ctx, err)
	}
	// logd answers at once whether it took the pipes. Anything else, or
	// nothing, means it did not touch them: a logd that predates Drain
	// (its gRPC server answers the greeting with HTTP/2 or hangs up), or
	// one that went away before it took them.
	var took [1]byte
	if _, err := io.ReadFull(uc, took[:]); err != nil || took[0] != pipesTaken && took[0] != pipesRefused {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w: no answer to the hand-over", ErrDrainUnsupported)
	}
	var res logdv1.DrainResult
	if err := readFramed(uc, &res); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// logd went away mid-drain (a restart): what it did not store
			// is still in the pipes.
			return 0, errdefs.Errorf(errdefs.ErrUnavailable, "logd closed the pipe connection")
		}
		return 0, errdefs.Errorf(errdefs.ErrUnavailable, "read logd's answer: %v", err)
	}
	if res.GetCode() != int32(codes.OK) {
		return res.GetSize(), errdefs.FromGRPC(status.Error(codes.Code(res.GetCode()), res.GetMessage()))
	}
	return res.GetSize(), nil
}

func sendErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errdefs.Errorf(errdefs.ErrUnavailable, "hand the pipes to logd: %v", err)
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

// fdOf returns f's descriptor number without File.Fd, which would switch
// the pipe to blocking mode for every holder of it, logd included.
func fdOf(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("pipe descriptor: %w", err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return 0, fmt.Errorf("pipe descriptor: %w", err)
	}
	return fd, nil
}

// frame encodes m as its length (4 bytes, big-endian) and its bytes.
func frame(m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", m, err)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...), nil
}

// readFramed reads one message written by frame.
func readFramed(r io.Reader, m proto.Message) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxDrainMessage {
		return fmt.Errorf("message of %d bytes", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}
