// Package handover is the client side of logd's pipe hand-over (see
// logdapi.Drainer): a job's output pipes are passed to logd on a connection
// of their own to logd's socket, and logd moves what arrives on them into
// the job's log. It links neither gRPC nor any protobuf package: a job's
// shim, one process per running job, uses it, and every package the shim
// links is resident memory and start time per job. The two messages of the
// exchange, logd/v1's DrainRequest and DrainResult, are encoded here field
// by field in protobuf's wire format (varints and length-delimited
// fields); the tests check both directions against the generated types.
package handover

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs/kind"
)

// The connection opens with Magic (which no HTTP/2 client sends: they open
// with "PRI "), then a DrainRequest framed by its length, sent with the
// pipes as SCM_RIGHTS. It stays open while logd drains; logd answers with
// Taken or Refused at once, then with a DrainResult, framed the same way,
// and either side closing it ends the drain.
const Magic = "JOBLET-PIPES/1\n"

// logd's first answer on a pipes connection, before the DrainResult: it
// took the pipes (and drains them until the result), or refused them.
const (
	Taken   = '+'
	Refused = '-'
)

// MaxMessage bounds a DrainRequest or DrainResult on the wire.
const MaxMessage = 64 << 10

// The streams a pipe may carry (joblet.v1.Stream).
const (
	Stdout int32 = 1
	Stderr int32 = 2
)

// Pipe is the read end of a pipe that carries one stream of a job's output.
type Pipe struct {
	Stream int32 // Stdout or Stderr
	File   *os.File
}

// ErrUnsupported is Drain's answer when logd did not take or refuse the
// pipes: a logd that predates the hand-over (its gRPC server answers the
// greeting with HTTP/2 or hangs up), or one that went away before it read
// them. Either way it did not touch them.
var ErrUnsupported = errors.New("logd cannot take the output pipes")

// Drain hands pipes to the logd listening on socket as job jobID's output
// and returns, once logd has moved everything up to every pipe's end of
// file into the log and closed it, the log's size. The caller keeps its
// pipes; after a failure the bytes not yet in the log are still in them, so
// Drain may be called again. Cancelling ctx closes the connection, which
// makes logd stop. It is Hand, then Conn.Result.
func Drain(ctx context.Context, socket, jobID string, pipes []Pipe) (int64, error) {
	c, err := Hand(ctx, socket, jobID, pipes)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.Result(ctx)
}

// Conn is a hand-over logd has answered: it drains the pipes (or refused
// them) and its DrainResult is next on the connection.
type Conn struct {
	uc *net.UnixConn
}

// Hand hands pipes to the logd listening on socket as job jobID's output
// and returns once logd has answered that it took or refused them; Result
// tells which, and the drain's end. Cancelling ctx meanwhile closes the
// connection.
func Hand(ctx context.Context, socket, jobID string, pipes []Pipe) (*Conn, error) {
	fds := make([]int, 0, len(pipes))
	for _, p := range pipes {
		fd, err := fdOf(p.File)
		if err != nil {
			return nil, err
		}
		fds = append(fds, fd)
	}
	msg := Frame(EncodeRequest(jobID, pipes))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, kind.Errorf(kind.ErrUnavailable, "connect to logd: %v", err)
	}
	uc := conn.(*net.UnixConn)
	stop := context.AfterFunc(ctx, func() { uc.Close() }) // logd sees the close and stops
	defer stop()
	fail := func(err error) (*Conn, error) {
		uc.Close()
		return nil, err
	}
	if _, err := uc.Write([]byte(Magic)); err != nil {
		return fail(sendErr(ctx, err))
	}
	// The descriptors go with the request's first byte; the kernel holds
	// them in the socket until logd reads that byte, whatever else happens.
	if _, _, err := uc.WriteMsgUnix(msg, syscall.UnixRights(fds...), nil); err != nil {
		return fail(sendErr(ctx, err))
	}
	var took [1]byte
	if _, err := io.ReadFull(uc, took[:]); err != nil || took[0] != Taken && took[0] != Refused {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(fmt.Errorf("%w: no answer to the hand-over", ErrUnsupported))
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	return &Conn{uc: uc}, nil
}

// Resume makes a Conn of f, a duplicate of one's connection (File) kept
// across an exec by the process it was handed in.
func Resume(f *os.File) (*Conn, error) {
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("resume the hand-over: %w", err)
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("resume the hand-over: not a unix socket")
	}
	return &Conn{uc: uc}, nil
}

// File returns a duplicate of the connection's descriptor (blocking mode
// set on it only, as os.File does), to keep across an exec.
func (c *Conn) File() (*os.File, error) { return c.uc.File() }

// SyscallConn gives the connection's descriptor, to wait for logd's answer
// without reading it.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.uc.SyscallConn() }

// SetReadDeadline interrupts, at t, a wait for logd's answer.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// Close ends the hand-over: logd stops draining.
func (c *Conn) Close() error { return c.uc.Close() }

// Result waits for logd's DrainResult and returns the log's size once
// logd has moved everything up to every pipe's end of file into the log
// and closed it. Cancelling ctx closes the connection.
func (c *Conn) Result(ctx context.Context) (int64, error) {
	stop := context.AfterFunc(ctx, func() { c.uc.Close() })
	defer stop()
	b, err := ReadFrame(c.uc)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// logd went away mid-drain (a restart): what it did not store
			// is still in the pipes.
			return 0, kind.Errorf(kind.ErrUnavailable, "logd closed the pipe connection")
		}
		return 0, kind.Errorf(kind.ErrUnavailable, "read logd's answer: %v", err)
	}
	size, code, text, err := DecodeResult(b)
	if err != nil {
		return 0, kind.Errorf(kind.ErrUnavailable, "read logd's answer: %v", err)
	}
	return size, codeError(code, text)
}

func sendErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return kind.Errorf(kind.ErrUnavailable, "hand the pipes to logd: %v", err)
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

// Field numbers of logd/v1's DrainRequest, DrainPipe and DrainResult, and
// the gRPC codes a DrainResult carries without a kind.
const (
	reqJobID     = 1
	reqPipes     = 2
	pipeStream   = 1
	pipeIndex    = 2
	resSize      = 1
	resCode      = 2
	resMessage   = 3
	codeOK       = 0
	codeCanceled = 1
)

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

func appendTag(b []byte, num, typ int) []byte {
	return binary.AppendUvarint(b, uint64(num)<<3|uint64(typ))
}

func appendBytes(b []byte, num int, v []byte) []byte {
	b = appendTag(b, num, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// EncodeRequest encodes a DrainRequest for jobID naming pipes, the i-th
// sent as the i-th descriptor. Fields at their zero value are left out,
// as protobuf does.
func EncodeRequest(jobID string, pipes []Pipe) []byte {
	b := appendBytes(nil, reqJobID, []byte(jobID))
	for i, p := range pipes {
		var m []byte
		if p.Stream != 0 {
			m = appendTag(m, pipeStream, wireVarint)
			m = binary.AppendUvarint(m, uint64(int64(p.Stream)))
		}
		if i != 0 {
			m = appendTag(m, pipeIndex, wireVarint)
			m = binary.AppendUvarint(m, uint64(i))
		}
		b = appendBytes(b, reqPipes, m)
	}
	return b
}

var errMalformed = errors.New("malformed message")

// DecodeResult decodes a DrainResult: the log's size, a gRPC code and its
// message. Fields it does not know are skipped, as protobuf does.
func DecodeResult(b []byte) (size int64, code int32, msg string, err error) {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, 0, "", errMalformed
		}
		b = b[n:]
		num, typ := tag>>3, int(tag&7)
		switch typ {
		case wireVarint:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return 0, 0, "", errMalformed
			}
			b = b[n:]
			switch num {
			case resSize:
				size = int64(v)
			case resCode:
				code = int32(v)
			}
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return 0, 0, "", errMalformed
			}
			v := b[n : n+int(l)]
			b = b[n+int(l):]
			if num == resMessage {
				msg = string(v)
			}
		case wireFixed64, wireFixed32:
			w := 8
			if typ == wireFixed32 {
				w = 4
			}
			if len(b) < w {
				return 0, 0, "", errMalformed
			}
			b = b[w:]
		default: // groups, long deprecated, and invalid types
			return 0, 0, "", fmt.Errorf("%w: wire type %d", errMalformed, typ)
		}
	}
	return size, code, msg, nil
}

// Frame prefixes m with its length (4 bytes, big-endian).
func Frame(m []byte) []byte {
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(m)), uint32(len(m))), m...)
}

// ReadFrame reads one message written by Frame, of at most MaxMessage
// bytes.
func ReadFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxMessage {
		return nil, fmt.Errorf("message of %d bytes", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// codeKinds maps the gRPC codes a DrainResult carries (as errdefs maps
// the kinds) back to the kinds.
var codeKinds = map[int32]error{
	3:  kind.ErrInvalidArgument,
	5:  kind.ErrNotFound,
	6:  kind.ErrAlreadyExists,
	7:  kind.ErrPermissionDenied,
	8:  kind.ErrResourceExhausted,
	9:  kind.ErrFailedPrecondition,
	14: kind.ErrUnavailable,
	16: kind.ErrUnauthenticated,
}

// codeError is the error a DrainResult's code and message stand for.
func codeError(code int32, msg string) error {
	switch code {
	case codeOK:
		return nil
	case codeCanceled:
		return fmt.Errorf("%s: %w", msg, context.Canceled)
	}
	if k, ok := codeKinds[code]; ok {
		return kind.Errorf(k, "%s", msg)
	}
	return fmt.Errorf("logd: %s (code %d)", msg, code)
}
