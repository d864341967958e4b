// Package logstream copies a job's output from a GetJobLogs stream to the
// user's stdout and stderr, byte for byte: no line splitting, no decoding.
//
// Chunks are received on one goroutine and written on another: small chunks
// gather in large buffers, which are flushed whenever no further chunk is
// already waiting, and large chunks are written as they are. So a fast job's
// output goes out in big writes, and a slow job's output still appears as
// soon as it arrives.
package logstream

import (
	"bufio"
	"errors"
	"io"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Receiver is the receiving side of a GetJobLogs stream. The chunks it
// returns are Copy's: once a chunk is written, its data buffer may be reused
// for a later chunk (see ChunkBuffer).
type Receiver interface {
	Recv() (*jobletv1.LogChunk, error)
}

// bufSize is the size of each output buffer, in which small chunks gather.
const bufSize = 256 << 10

// directSize is the size from which a chunk is written straight from its own
// buffer, after what is buffered, instead of being copied into the output
// buffer first: logd sends a fast job's output as chunks of nearly 64 KiB,
// and copying a GiB of them through the buffer was 3.6% of rnx's CPU. Such a
// write is large enough on its own.
const directSize = 32 << 10

// Copy writes the data of every chunk from src to stdout or stderr, by the
// chunk's stream, until src ends. It returns nil when src ends with io.EOF
// and otherwise the first receive or write error. On a write error it stops
// reading; the caller cancels the stream's context.
func Copy(src Receiver, stdout, stderr io.Writer) error {
	chunks := make(chan *jobletv1.LogChunk, 64)
	recvErr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(chunks)
		for {
			c, err := src.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case chunks <- c:
			case <-done:
				return
			}
		}
	}()

	out := output{bufio.NewWriterSize(stdout, bufSize), stdout}
	errOut := output{bufio.NewWriterSize(stderr, bufSize), stderr}
	var last *bufio.Writer
	for c := range chunks {
		w := out
		if c.GetStream() == jobletv1.Stream_STREAM_STDERR {
			w = errOut
		}
		// Flush the other stream first, so interleaved stdout and stderr
		// reach a shared terminal in the order the job wrote them.
		if last != nil && last != w.buf {
			if err := last.Flush(); err != nil {
				return err
			}
		}
		last = w.buf
		if err := w.write(c.GetData()); err != nil {
			return err
		}
		recycle(c.GetData())
		if len(chunks) == 0 {
			if err := w.buf.Flush(); err != nil {
				return err
			}
		}
	}
	if err := errors.Join(out.buf.Flush(), errOut.buf.Flush()); err != nil {
		return err
	}
	if err := <-recvErr; !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// output is one of the user's streams and its buffer.
type output struct {
	buf *bufio.Writer
	dst io.Writer
}

// write writes p: copied into the buffer if small, otherwise after what the
// buffer holds, straight from p.
func (o output) write(p []byte) error {
	if len(p) < directSize {
		_, err := o.buf.Write(p)
		return err
	}
	if err := o.buf.Flush(); err != nil {
		return err
	}
	_, err := o.dst.Write(p)
	return err
}
