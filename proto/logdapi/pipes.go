package logdapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/errdefs"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
)

// ServePipes wraps logd's listener: connections that hand over pipes (they
// open with pipesMagic) are served here with d, the others are passed on
// to the gRPC server that Accepts from the returned listener. Which is
// which is told from the first byte, peeked (MSG_PEEK), so a gRPC
// connection reaches gRPC untouched, as the *net.UnixConn the peer
// credential check needs.
func ServePipes(l net.Listener, d Drainer, log zerolog.Logger) net.Listener {
	p := &pipeListener{Listener: l, d: d, log: log, conns: make(chan net.Conn), closed: make(chan struct{}), failed: make(chan struct{})}
	go p.accept()
	return p
}

// pipesWait bounds how long a new connection may take to say whether it
// carries pipes or gRPC, and then to send its request.
const pipesWait = 10 * time.Second

type pipeListener struct {
	net.Listener
	d         Drainer
	log       zerolog.Logger
	conns     chan net.Conn
	closed    chan struct{} // Close was called
	once      sync.Once
	failed    chan struct{} // the listener's Accept failed for good
	acceptErr error
}

func (p *pipeListener) accept() {
	var delay time.Duration
	for {
		c, err := p.Listener.Accept()
		if err != nil {
			// Out of descriptors and the like: wait and go on, as gRPC's
			// own accept loop does.
			if t, ok := err.(interface{ Temporary() bool }); ok && t.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-p.closed:
				}
			}
			p.acceptErr = err
			close(p.failed)
			return
		}
		delay = 0
		go p.sort(c)
	}
}

// Accept implements net.Listener: the next connection for gRPC.
func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.failed:
		return nil, p.acceptErr
	case <-p.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (p *pipeListener) Close() error {
	p.once.Do(func() { close(p.closed) })
	return p.Listener.Close()
}

func (p *pipeListener) sort(c net.Conn) {
	if uc, ok := c.(*net.UnixConn); ok && carriesPipes(uc) {
		p.drain(uc)
		return
	}
	select {
	case p.conns <- c:
	case <-p.closed:
		c.Close()
	}
}

// carriesPipes peeks at the connection's first byte. A connection that says
// nothing in time goes to gRPC, which has its own handshake timeout.
func carriesPipes(uc *net.UnixConn) bool {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	_ = uc.SetReadDeadline(time.Now().Add(pipesWait))
	defer uc.SetReadDeadline(time.Time{})
	var (
		b [1]byte
		n int
	)
	err = rc.Read(func(fd uintptr) bool {
		var perr error
		n, _, perr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK)
		return !errors.Is(perr, unix.EAGAIN)
	})
	return err == nil && n == 1 && b[0] == pipesMagic[0]
}

func (p *pipeListener) drain(uc *net.UnixConn) {
	defer uc.Close()
	res := p.serveDrain(uc)
	if msg, err := frame(res); err == nil {
		_, _ = uc.Write(msg)
	}
}

// serveDrain takes the request and its pipes and drains them until done,
// or until the peer closes the connection. It says first whether it took
// them: until then the peer may read the pipes itself.
func (p *pipeListener) serveDrain(uc *net.UnixConn) *logdv1.DrainResult {
	jobID, pipes, err := receivePipes(uc)
	if err != nil {
		_, _ = uc.Write([]byte{pipesRefused})
		return result(0, err)
	}
	if _, err := uc.Write([]byte{pipesTaken}); err != nil {
		for _, pp := range pipes {
			pp.File.Close()
		}
		return result(0, errdefs.Errorf(errdefs.ErrUnavailable, "the peer went away"))
	}
	defer func() {
		for _, pp := range pipes {
			pp.File.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// The peer sends nothing more: a read returns when it closes (it
		// gave up, or died), which ends the drain.
		_, _ = uc.Read(make([]byte, 1))
		cancel()
	}()
	size, err := p.d.Drain(ctx, jobID, pipes)
	if err != nil && ctx.Err() == nil {
		p.log.Debug().Err(err).Str("job_id", jobID).Msg("drain ended")
	}
	return result(size, err)
}

func result(size int64, err error) *logdv1.DrainResult {
	st := status.Convert(errdefs.ToGRPC(err))
	return &logdv1.DrainResult{Size: size, Code: int32(st.Code()), Message: st.Message()}
}

// receivePipes checks the peer is root and reads the request with its
// descriptors; every descriptor received is either returned in a Pipe or
// closed.
func receivePipes(uc *net.UnixConn) (string, []Pipe, error) {
	if err := rootPeer(uc); err != nil {
		return "", nil, err
	}
	_ = uc.SetReadDeadline(time.Now().Add(pipesWait))
	defer uc.SetReadDeadline(time.Time{})
	magic := make([]byte, len(pipesMagic))
	if _, err := io.ReadFull(uc, magic); err != nil || string(magic) != pipesMagic {
		return "", nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "not a pipe hand-over")
	}
	// The descriptors come with the request's first byte, so this read
	// needs room for a usual request only (a job id and two pipes); the
	// rest of a longer one is read after it. A buffer for the largest
	// (64 KiB) made logd allocate 64 MiB per 1000 jobs, and the heap grow
	// with it in a burst.
	buf := make([]byte, 512)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	fds := parseRights(oob[:oobn])
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if err != nil {
		closeAll()
		return "", nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "read the pipe hand-over: %v", err)
	}
	var req logdv1.DrainRequest
	if err := readFramed(io.MultiReader(bytes.NewReader(buf[:n]), uc), &req); err != nil {
		closeAll()
		return "", nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "read the pipe hand-over: %v", err)
	}
	if len(req.GetPipes()) == 0 || len(req.GetPipes()) > 2 || len(fds) != len(req.GetPipes()) {
		closeAll()
		return "", nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "%d pipes named, %d descriptors sent", len(req.GetPipes()), len(fds))
	}
	var pipes []Pipe
	for _, rp := range req.GetPipes() {
		i := int(rp.GetIndex())
		if i < 0 || i >= len(fds) || fds[i] < 0 {
			closeAll()
			for _, pp := range pipes {
				pp.File.Close()
			}
			return "", nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "pipe index %d", i)
		}
		f, err := pipeFile(fds[i])
		fds[i] = -1 // owned by f now, or closed
		if err != nil {
			closeAll()
			for _, pp := range pipes {
				pp.File.Close()
			}
			return "", nil, err
		}
		pipes = append(pipes, Pipe{Stream: rp.GetStream(), File: f})
	}
	return req.GetJobId(), pipes, nil
}

// rootPeer refuses a peer that is not root: whatever the pipes carry
// becomes a job's output.
func rootPeer(uc *net.UnixConn) error {
	rc, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw conn: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return fmt.Errorf("raw conn: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	if cred.Uid != 0 {
		return errdefs.Errorf(errdefs.ErrPermissionDenied, "only root may hand over output pipes")
	}
	return nil
}

func parseRights(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if r, err := syscall.ParseUnixRights(&m); err == nil {
			fds = append(fds, r...)
		}
	}
	return fds
}

// pipeFile makes fd, which must be a pipe, a File in the runtime's poller
// (non-blocking: the flag belongs to the pipe, which the sender made with
// os.Pipe, so this changes nothing for it). fd is closed on failure.
func pipeFile(fd int) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "an output descriptor is not a pipe")
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pipe: %w", err)
	}
	return os.NewFile(uintptr(fd), "job output pipe"), nil
}
