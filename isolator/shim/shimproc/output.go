package shimproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs/kind"
	"github.com/joblet-dev/joblet/proto/logdapi/handover"
)

// The job's output pipes are handed to logd (package handover), which moves
// their contents into the job's log: the output never passes through the
// shim. If logd goes away meanwhile (a restart), the bytes it has not
// stored are still in the pipes, and they are handed to the next logd.
//
// There is no second path that reads the pipes here and sends the output
// with logd's gRPC Write, as package output has for the isolator: every
// logd built from this tree since the hand-over was added takes the pipes,
// and logd and the shim ship together (one build, one package). Without
// that path the shim links neither gRPC nor protobuf, about
// 10 MiB of resident memory per running job. A logd that answers the
// hand-over with anything else (one that is going away, or, in a mixed
// install, an older one) is tried again with a backoff, as an absent one
// is; the job meanwhile blocks on its full pipe rather than losing output.

// Backoff between hand-overs, and the size the pipes are grown to.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
	pipeBytes  = 1 << 20
)

// errAbandoned is the error of a forwarder told to give up before logd had
// everything.
var errAbandoned = errors.New("output forwarding abandoned")

// forwarder hands one job's output pipes to logd until its log is
// complete.
type forwarder struct {
	socket, jobID string
	pipes         []handover.Pipe
	ctx           context.Context // cancelled by abandon
	cancel        context.CancelFunc
	done          chan struct{}
	err           error // set before done is closed

	// The shim may park (park.go) while the forwarder waits for logd's
	// answer on a hand-over logd took: hold stops that wait before any of
	// the answer is read, and the parked shim passes the connection on.
	mu       sync.Mutex
	waiting  *handover.Conn // the hand-over whose answer is waited for
	resumed  *handover.Conn // a parked shim's, taken back: waited for first
	held     bool
	unheldCh chan struct{}
}

// forward starts handing stdout and stderr (read ends, owned by the
// forwarder from now on) to the logd at socket as job jobID's output.
func forward(socket, jobID string, stdout, stderr *os.File) *forwarder {
	f := newForwarder(socket, jobID, stdout, stderr)
	for _, p := range f.pipes {
		growPipe(p.File)
	}
	go f.run()
	return f
}

// resumeForward is forward in a shim that took its job back from parking:
// c is the hand-over logd took before, whose answer is still to come.
func resumeForward(socket, jobID string, stdout, stderr *os.File, c *handover.Conn) *forwarder {
	f := newForwarder(socket, jobID, stdout, stderr)
	f.resumed = c
	go f.run()
	return f
}

func newForwarder(socket, jobID string, stdout, stderr *os.File) *forwarder {
	ctx, cancel := context.WithCancel(context.Background())
	return &forwarder{socket: socket, jobID: jobID, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		unheldCh: make(chan struct{}, 1),
		pipes:    []handover.Pipe{{Stream: handover.Stdout, File: stdout}, {Stream: handover.Stderr, File: stderr}}}
}

// drain is handover.Drain, with the wait for logd's answer made so that
// the shim can park meanwhile (hold).
func (f *forwarder) drain() error {
	c := f.resumed
	f.resumed = nil
	if c == nil {
		var err error
		if c, err = handover.Hand(f.ctx, f.socket, f.jobID, f.pipes); err != nil {
			return err
		}
	}
	defer c.Close()
	if err := f.awaitAnswer(c); err != nil {
		return err
	}
	_, err := c.Result(f.ctx)
	return err
}

// awaitAnswer waits until logd's answer can be read on c, or c fails,
// without reading any of it; while the shim is held for parking, it waits
// for it to be let go (the park failed: a parked shim never comes back
// here).
func (f *forwarder) awaitAnswer(c *handover.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	for {
		f.mu.Lock()
		f.waiting = c
		f.mu.Unlock()
		_ = rc.Read(readyToRead)
		f.mu.Lock()
		f.waiting = nil
		held := f.held
		f.mu.Unlock()
		if !held {
			return nil
		}
		<-f.unheldCh
	}
}

// hold stops the wait for logd's answer, for the shim to park: it returns
// the hand-over, whose answer nothing in this process will read, or false
// when there is no such wait (the hand-over is not taken yet, or logd
// has answered).
func (f *forwarder) hold() (*handover.Conn, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.waiting == nil || f.held {
		return nil, false
	}
	f.held = true
	_ = f.waiting.SetReadDeadline(time.Unix(1, 0)) // ends the wait at once
	return f.waiting, true
}

// unhold lets the wait go on after a park that failed.
func (f *forwarder) unhold(c *handover.Conn) {
	f.mu.Lock()
	f.held = false
	_ = c.SetReadDeadline(time.Time{})
	f.mu.Unlock()
	f.unheldCh <- struct{}{}
}

func (f *forwarder) run() {
	backoff := minBackoff
	for {
		err := f.drain()
		switch {
		case err == nil:
			for _, p := range f.pipes {
				p.File.Close()
			}
			f.finish(nil)
			return
		case f.ctx.Err() != nil:
			f.finish(errAbandoned)
			return
		case errors.Is(err, kind.ErrFailedPrecondition) || errors.Is(err, kind.ErrInvalidArgument):
			// The log is not what this job's output continues, or the
			// hand-over is refused: handing it again cannot fix that.
			f.finish(fmt.Errorf("logd refused the output: %w", err))
			return
		}
		select {
		case <-time.After(backoff):
		case <-f.ctx.Done():
			f.finish(errAbandoned)
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// finish records why delivery ended (nil: all of it, and the log's end,
// is in logd). On failure the pipes are drained into nothing until EOF, so
// that the job never blocks on a pipe nobody reads.
func (f *forwarder) finish(err error) {
	if err != nil {
		for _, p := range f.pipes {
			go func() {
				_, _ = io.Copy(io.Discard, p.File)
				p.File.Close()
			}()
		}
	}
	f.err = err
	close(f.done)
}

// await waits, for at most d, until logd has the whole log, and abandons
// the delivery otherwise; it returns why the log is incomplete, or nil.
func (f *forwarder) await(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.done:
	case <-t.C:
		f.cancel()
		<-f.done
	}
	return f.err
}

// growPipe makes p's pipe hold pipeBytes, if the kernel allows it
// (fs.pipe-max-size binds only non-root): with the default 64 KiB a job
// writing fast sleeps and wakes for every few KiB logd takes.
func growPipe(p *os.File) {
	rc, err := p.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeBytes) })
}
