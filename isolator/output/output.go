// Package output forwards a job's stdout and stderr to logd.
//
// When logd can take them (logdapi.Drainer), the job's pipes are handed to
// logd, which moves their contents into the log itself: the output does not
// pass through this process. If logd goes away meanwhile, the bytes it has
// not stored are still in the pipes, and the pipes are handed to the next
// logd. Otherwise, or when logd cannot take them, the output is read here:
//
// Both streams go through one ordered queue per job, so every byte gets one
// global offset and logd sees the two streams interleaved in the order the
// isolator read them. The queue is sent in batches; a failed batch is resent
// with the same offsets after a backoff (logd skips what it already has), so
// nothing is lost or duplicated while logd restarts. While the queue is full
// the readers stop reading, and the job blocks on its pipe instead of the
// isolator buffering without bound.
package output

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// Options tune a Forwarder; zero values take the defaults.
type Options struct {
	PipeBytes   int           // capacity a pipe given to Start is grown to (1 MiB)
	ReadBytes   int           // largest single read from a pipe (1 MiB less 4 KiB, see defaultReadBytes)
	BatchBytes  int           // most bytes sent in one Append (1 MiB)
	BufferBytes int           // unsent bytes at which reading stops (4 MiB)
	MinBackoff  time.Duration // first wait after a failed Append (100 ms)
	MaxBackoff  time.Duration // longest wait between attempts (2 s)
	CallTimeout time.Duration // bound on one Append call (30 s)
	Log         zerolog.Logger
}

func (o *Options) defaults() {
	if o.PipeBytes <= 0 {
		o.PipeBytes = 1 << 20
	}
	if o.ReadBytes <= 0 {
		o.ReadBytes = defaultReadBytes
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 1 << 20
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = 4 << 20
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(2*time.Second, o.MinBackoff)
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
}

// firstReadBytes is the size of a stream's first read buffer, grown up to
// Options.ReadBytes while the job writes faster than it is read.
const firstReadBytes = 64 << 10

// defaultReadBytes keeps one read, sent as one message with its few bytes
// of header, within the 1 MiB top size class of gRPC's buffer pool
// (transport.InstallBufferPool): a message just over it is a fresh,
// zeroed allocation on both sides of every Append.
const defaultReadBytes = 1<<20 - 4<<10

// ErrAbandoned is the error of a Forwarder that was told to give up before
// everything was delivered.
var ErrAbandoned = errors.New("output forwarding abandoned")

// Forwarder sends one job's output to logd. The records it passes to
// Append are its own again once Append returns: it reads more output into
// their buffers.
type Forwarder struct {
	logd  logdapi.Logd
	jobID string
	opts  Options

	ctx    context.Context // cancelled by Abandon; bounds every Append
	cancel context.CancelFunc
	done   chan struct{} // closed when the sender has stopped

	mu       sync.Mutex
	cond     *sync.Cond // signalled on any change below
	spare    [][]byte   // delivered read buffers of ReadBytes, for the readers to reuse
	queue    []logdapi.Record
	queued   int   // bytes in queue
	next     int64 // offset of the next byte read
	open     int   // readers not yet at EOF
	stopped  bool  // the sender is gone: readers discard what they read
	err      error // why the sender stopped early; nil once all delivered
	complete bool  // every byte and the eof are in logd
}

// Start forwards stdout and stderr (either may be nil) to logd as job
// jobID's log, and closes the log once both reach EOF. Start takes
// ownership of the readers and closes them at EOF.
func Start(logd logdapi.Logd, jobID string, stdout, stderr io.ReadCloser, opts Options) *Forwarder {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{logd: logd, jobID: jobID, opts: opts, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	streams := map[jobletv1.Stream]io.ReadCloser{}
	if stdout != nil {
		streams[jobletv1.Stream_STREAM_STDOUT] = stdout
	}
	if stderr != nil {
		streams[jobletv1.Stream_STREAM_STDERR] = stderr
	}
	f.open = len(streams) // before any reader runs and counts down
	var pipes []logdapi.Pipe
	for kind, r := range streams {
		growPipe(r, opts.PipeBytes)
		if p, ok := r.(*os.File); ok {
			pipes = append(pipes, logdapi.Pipe{Stream: kind, File: p})
		}
	}
	if d, ok := logd.(logdapi.Drainer); ok && len(pipes) > 0 && len(pipes) == len(streams) {
		go f.drain(d, pipes, streams)
		return f
	}
	f.forward(streams)
	return f
}

// forward reads the streams here and sends what they carry with Append.
func (f *Forwarder) forward(streams map[jobletv1.Stream]io.ReadCloser) {
	for kind, r := range streams {
		go f.read(kind, r)
	}
	go f.send()
}

// drain hands the pipes to logd until it has stored everything, handing
// them again after a failure. A logd that cannot take them gets the output
// the other way, read here, from where its log ends.
func (f *Forwarder) drain(d logdapi.Drainer, pipes []logdapi.Pipe, streams map[jobletv1.Stream]io.ReadCloser) {
	backoff := f.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		size, err := d.Drain(f.ctx, f.jobID, pipes)
		switch {
		case err == nil:
			if attempt > 1 {
				f.opts.Log.Info().Int("attempts", attempt).Msg("job output delivered to logd again")
			}
			for _, r := range streams {
				r.Close()
			}
			f.stop(size, nil)
			return
		case f.ctx.Err() != nil:
			f.discard(streams)
			f.stop(0, ErrAbandoned)
			return
		case errors.Is(err, logdapi.ErrDrainUnsupported):
			f.opts.Log.Info().Err(err).Msg("logd does not take the output pipes; forwarding the output")
			if err := f.resume(); err != nil {
				f.discard(streams)
				f.stop(0, err)
				return
			}
			f.forward(streams)
			return
		case errors.Is(err, errdefs.ErrFailedPrecondition) || errors.Is(err, errdefs.ErrInvalidArgument):
			f.opts.Log.Error().Err(err).Msg("logd refused job output; the rest of it is dropped")
			f.discard(streams)
			f.stop(0, fmt.Errorf("logd refused the output: %w", err))
			return
		}
		if attempt == 1 {
			f.opts.Log.Warn().Err(err).Msg("cannot hand job output to logd; retrying")
		}
		if !f.sleep(backoff) {
			f.discard(streams)
			f.stop(0, ErrAbandoned)
			return
		}
		backoff = min(2*backoff, f.opts.MaxBackoff)
	}
}

// resume sets the offset of the next byte read to the length of the log in
// logd, which a drain may have started.
func (f *Forwarder) resume() error {
	backoff := f.opts.MinBackoff
	for {
		ctx, cancel := context.WithTimeout(f.ctx, f.opts.CallTimeout)
		st, err := f.logd.Stat(ctx, f.jobID)
		cancel()
		if err == nil {
			f.mu.Lock()
			f.next = st.Size
			f.mu.Unlock()
			return nil
		}
		if !f.sleep(backoff) {
			return ErrAbandoned
		}
		backoff = min(2*backoff, f.opts.MaxBackoff)
	}
}

// sleep waits for d, or reports false if the forwarder is abandoned first.
func (f *Forwarder) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-f.ctx.Done():
		return false
	}
}

// discard drains the streams into nothing until EOF, so that the job never
// blocks on a pipe nobody reads.
func (f *Forwarder) discard(streams map[jobletv1.Stream]io.ReadCloser) {
	for _, r := range streams {
		go func() {
			_, _ = io.Copy(io.Discard, r)
			r.Close()
		}()
	}
}

// stop records the end of delivery: err nil means all of the output, size
// bytes, and its end are in logd.
func (f *Forwarder) stop(size int64, err error) {
	f.mu.Lock()
	f.stopped = true
	f.complete = err == nil
	f.err = err
	if err == nil {
		f.next = size
	}
	f.open = 0
	f.queue, f.queued, f.spare = nil, 0, nil
	f.cond.Broadcast()
	f.mu.Unlock()
	close(f.done)
}

// Done is closed once the log is complete in logd, or the forwarder gave up.
func (f *Forwarder) Done() <-chan struct{} { return f.done }

// Err says, once Done is closed, why the output is incomplete in logd, or
// nil if every byte and the end of the log were delivered.
func (f *Forwarder) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.complete {
		return nil
	}
	return f.err
}

// Abandon stops delivering: what has not reached logd yet is dropped, and
// the readers keep draining their pipes (so no writer blocks) until EOF.
// Abandon returns once the sender has stopped.
func (f *Forwarder) Abandon() {
	f.cancel()
	<-f.done
}

// Size is the number of bytes read from the job so far; when logd drains
// the pipes itself, the number of bytes in its log once Done is closed.
func (f *Forwarder) Size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next
}

// growPipe makes r's pipe hold n bytes, if r is a pipe and the kernel
// allows it (fs.pipe-max-size, 1 MiB by default, binds only non-root). At
// the default 64 KiB a job writing fast fills the pipe in a moment and then
// sleeps and wakes for every few KiB the forwarder reads; with a larger pipe
// it writes on while a batch is being delivered, and each read takes more.
func growPipe(r io.Reader, n int) {
	sc, ok := r.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		// Not a pipe (EBADF) or over the limit (EPERM): keep the pipe as it is.
		_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, n)
	})
}

func (f *Forwarder) read(kind jobletv1.Stream, r io.ReadCloser) {
	defer r.Close()
	// Small at first, grown while reads fill it: most jobs write little,
	// and a shim per job holding ReadBytes per stream is memory per job.
	buf := make([]byte, min(firstReadBytes, f.opts.ReadBytes))
	for {
		n, err := r.Read(buf)
		switch {
		case n == 0:
		case 2*n < len(buf):
			// A copy sized to the data: queued bytes are what memory costs.
			f.enqueue(kind, bytes.Clone(buf[:n]))
		default:
			// At least half full: queued as it is (no copy), and the next
			// read goes to a delivered buffer or a new one.
			f.enqueue(kind, buf[:n])
			if n == len(buf) && n < f.opts.ReadBytes {
				buf = make([]byte, min(4*n, f.opts.ReadBytes))
			} else {
				buf = f.nextBuffer(len(buf))
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				f.opts.Log.Warn().Err(err).Stringer("stream", kind).Msg("reading job output")
			}
			break
		}
	}
	f.mu.Lock()
	f.open--
	f.cond.Broadcast()
	f.mu.Unlock()
}

// nextBuffer returns a read buffer of size n: a delivered one when there
// is one of that size (the largest, ReadBytes), else a new one.
func (f *Forwarder) nextBuffer(n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := len(f.spare); k > 0 && n == f.opts.ReadBytes {
		b := f.spare[k-1]
		f.spare = f.spare[:k-1]
		return b
	}
	return make([]byte, n)
}

// maxSpare bounds the delivered buffers kept: one per stream covers a
// reader's next read while its last one waits in the queue.
const maxSpare = 2

// recycle keeps up to maxSpare of the delivered records' read buffers of
// ReadBytes for reuse: a job writing fast then reads into the same few
// buffers instead of allocating (and collecting) one per read. Called with
// f.mu held.
func (f *Forwarder) recycle(recs []logdapi.Record) {
	for _, r := range recs {
		if cap(r.Data) == f.opts.ReadBytes && len(f.spare) < maxSpare {
			f.spare = append(f.spare, r.Data[:cap(r.Data)])
		}
	}
}

// enqueue gives data its offset and queues it, first waiting for room:
// while it waits, its reader does not read, which is the backpressure.
func (f *Forwarder) enqueue(kind jobletv1.Stream, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.queued >= f.opts.BufferBytes && !f.stopped {
		f.cond.Wait()
	}
	if f.stopped {
		return
	}
	f.queue = append(f.queue, logdapi.Record{Stream: kind, Data: data, Offset: f.next})
	f.next += int64(len(data))
	f.queued += len(data)
	f.cond.Broadcast()
}

func (f *Forwarder) send() {
	err := f.sendAll()
	f.mu.Lock()
	f.stopped = true
	f.complete = err == nil
	f.err = err
	f.queue, f.queued, f.spare = nil, 0, nil
	f.cond.Broadcast()
	f.mu.Unlock()
	close(f.done)
}

func (f *Forwarder) sendAll() error {
	for {
		f.mu.Lock()
		for len(f.queue) == 0 && f.open > 0 {
			f.cond.Wait()
		}
		// The queue only grows at its tail while unlocked, so the front
		// records taken here stay valid until they are removed below.
		n, size := 0, 0
		for n < len(f.queue) && (n == 0 || size+len(f.queue[n].Data) <= f.opts.BatchBytes) {
			size += len(f.queue[n].Data)
			n++
		}
		batch := append([]logdapi.Record(nil), f.queue[:n]...)
		eof := f.open == 0 && n == len(f.queue)
		f.mu.Unlock()

		if err := f.appendRetrying(batch, eof); err != nil {
			return err
		}

		f.mu.Lock()
		// Delivered: logd has the bytes, gRPC no longer holds the slices.
		f.recycle(batch)
		clear(f.queue[:n]) // the backing array must not pin the data
		f.queue = f.queue[n:]
		f.queued -= size
		f.cond.Broadcast()
		f.mu.Unlock()
		if eof {
			return nil
		}
	}
}

// appendRetrying appends batch until logd accepts it, backing off between
// attempts. It gives up on Abandon, or on an error that a retry cannot cure.
func (f *Forwarder) appendRetrying(batch []logdapi.Record, eof bool) error {
	backoff := f.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(f.ctx, f.opts.CallTimeout)
		_, err := f.logd.Append(ctx, f.jobID, batch, eof)
		cancel()
		if err == nil {
			if attempt > 1 {
				f.opts.Log.Info().Int("attempts", attempt).Msg("job output delivered to logd again")
			}
			return nil
		}
		if f.ctx.Err() != nil {
			return ErrAbandoned
		}
		// The log in logd is shorter than what was already acknowledged, or
		// the request is refused: resending the same bytes cannot fix it.
		if errors.Is(err, errdefs.ErrFailedPrecondition) || errors.Is(err, errdefs.ErrInvalidArgument) {
			f.opts.Log.Error().Err(err).Msg("logd refused job output; the rest of it is dropped")
			return fmt.Errorf("logd refused the output: %w", err)
		}
		if attempt == 1 {
			f.opts.Log.Warn().Err(err).Msg("cannot deliver job output to logd; retrying")
		}
		select {
		case <-time.After(backoff):
		case <-f.ctx.Done():
			return ErrAbandoned
		}
		backoff = min(2*backoff, f.opts.MaxBackoff)
	}
}
