package output

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// fakeLogd keeps one log in memory with logd's append semantics: a record
// below the log's size is deduplicated, one past the end is refused. fail
// decides, per call, whether the call fails and after how many records.
type fakeLogd struct {
	mu     sync.Mutex
	recs   []logdapi.Record
	size   int64
	closed bool
	calls  int
	fail   func(call int) (fail bool, keep int)
}

func (l *fakeLogd) Append(_ context.Context, _ string, recs []logdapi.Record, eof bool) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	fail, keep := false, len(recs)
	if l.fail != nil {
		fail, keep = l.fail(l.calls)
		keep = min(keep, len(recs))
	}
	if l.closed {
		return l.size, errdefs.Errorf(errdefs.ErrFailedPrecondition, "log closed")
	}
	for _, r := range recs[:keep] {
		if r.Offset > l.size {
			return l.size, errdefs.Errorf(errdefs.ErrFailedPrecondition, "gap at %d, log is %d", r.Offset, l.size)
		}
		if skip := l.size - r.Offset; skip < int64(len(r.Data)) {
			// A copy, as the real client's encoding makes: the forwarder
			// reuses a record's buffer once Append has returned.
			l.recs = append(l.recs, logdapi.Record{Stream: r.Stream, Data: bytes.Clone(r.Data[skip:]), Offset: l.size})
			l.size += int64(len(r.Data)) - skip
		}
	}
	if fail {
		return l.size, errdefs.Errorf(errdefs.ErrUnavailable, "logd is down")
	}
	l.closed = l.closed || eof
	return l.size, nil
}

func (l *fakeLogd) Read(context.Context, string, int64, bool, func(logdapi.Record) error) error {
	return errors.ErrUnsupported
}

func (l *fakeLogd) Stat(context.Context, string) (logdapi.Stat, error) {
	return logdapi.Stat{}, errors.ErrUnsupported
}

func (l *fakeLogd) setFail(fn func(int) (bool, int)) {
	l.mu.Lock()
	l.fail = fn
	l.mu.Unlock()
}

// streams returns what logd holds per stream and checks the offsets.
func (l *fakeLogd) streams(t *testing.T) (out, errOut []byte, closed bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var off int64
	var o, e bytes.Buffer
	for _, r := range l.recs {
		if r.Offset != off {
			t.Fatalf("record at %d, want %d", r.Offset, off)
		}
		off += int64(len(r.Data))
		if r.Stream == jobletv1.Stream_STREAM_STDOUT {
			o.Write(r.Data)
		} else {
			e.Write(r.Data)
		}
	}
	return o.Bytes(), e.Bytes(), l.closed
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// writeAll writes data to w in random-sized pieces, then closes w.
func writeAll(w io.WriteCloser, data []byte, rng *rand.Rand) <-chan error {
	done := make(chan error, 1)
	go func() {
		defer w.Close()
		for len(data) > 0 {
			n := min(len(data), 1+rng.IntN(100<<10))
			if _, err := w.Write(data[:n]); err != nil {
				done <- err
				return
			}
			data = data[n:]
		}
		done <- nil
	}()
	return done
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func waitDone(t *testing.T, f *Forwarder, d time.Duration) {
	t.Helper()
	select {
	case <-f.Done():
	case <-time.After(d):
		t.Fatal("forwarder did not finish")
	}
}

func fastOpts() Options {
	return Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func TestForwardsBothStreamsInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	wantOut, wantErr := randomBytes(rng, 3<<20), randomBytes(rng, 1<<20)
	logd := &fakeLogd{}
	or, ow := pipe(t)
	er, ew := pipe(t)
	f := Start(logd, "1", or, er, fastOpts())
	w1, w2 := writeAll(ow, wantOut, rand.New(rand.NewPCG(3, 4))), writeAll(ew, wantErr, rand.New(rand.NewPCG(5, 6)))
	waitDone(t, f, 10*time.Second)
	if err := errors.Join(<-w1, <-w2, f.Err()); err != nil {
		t.Fatal(err)
	}
	out, errOut, closed := logd.streams(t)
	if !bytes.Equal(out, wantOut) || !bytes.Equal(errOut, wantErr) || !closed {
		t.Fatalf("stdout %d/%d bytes, stderr %d/%d bytes, closed %v", len(out), len(wantOut), len(errOut), len(wantErr), closed)
	}
}

// A logd that fails often, sometimes after keeping part of a batch, still
// ends up with every byte exactly once and in order.
func TestRetryKeepsEveryByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	wantOut, wantErr := randomBytes(rng, 4<<20), randomBytes(rng, 2<<20)
	logd := &fakeLogd{}
	failRng := rand.New(rand.NewPCG(9, 10))
	logd.setFail(func(int) (bool, int) {
		if failRng.IntN(3) == 0 {
			return true, failRng.IntN(4) // keeps 0..3 records, then fails
		}
		return false, 1 << 30
	})
	or, ow := pipe(t)
	er, ew := pipe(t)
	opts := fastOpts()
	opts.BatchBytes = 64 << 10
	f := Start(logd, "1", or, er, opts)
	w1, w2 := writeAll(ow, wantOut, rand.New(rand.NewPCG(11, 12))), writeAll(ew, wantErr, rand.New(rand.NewPCG(13, 14)))
	waitDone(t, f, 30*time.Second)
	if err := errors.Join(<-w1, <-w2, f.Err()); err != nil {
		t.Fatal(err)
	}
	out, errOut, closed := logd.streams(t)
	if !bytes.Equal(out, wantOut) || !bytes.Equal(errOut, wantErr) || !closed {
		t.Fatalf("stdout %d/%d bytes, stderr %d/%d bytes, closed %v", len(out), len(wantOut), len(errOut), len(wantErr), closed)
	}
	if logd.calls < 10 {
		t.Fatalf("only %d calls: the failure path was hardly exercised", logd.calls)
	}
}

// While logd is down the forwarder stops reading once its buffer is full,
// and delivers everything once logd is back.
func TestBackpressure(t *testing.T) {
	logd := &fakeLogd{}
	down := func(int) (bool, int) { return true, 0 }
	logd.setFail(down)
	opts := fastOpts()
	opts.BufferBytes, opts.ReadBytes = 256<<10, 16<<10
	or, ow := pipe(t)
	want := randomBytes(rand.New(rand.NewPCG(15, 16)), 8<<20)
	f := Start(logd, "1", or, nil, opts)
	w := writeAll(ow, want, rand.New(rand.NewPCG(17, 18)))

	// The pipe (64 KiB) plus the buffer fill up; the writer must then block.
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-w:
		t.Fatalf("writer finished (%v) while logd was down: output was not held back", err)
	default:
	}
	if got, limit := f.Size(), int64(opts.BufferBytes+opts.ReadBytes); got > limit {
		t.Fatalf("read %d bytes while logd was down, buffer limit %d", got, limit)
	}

	logd.setFail(nil)
	waitDone(t, f, 30*time.Second)
	if err := errors.Join(<-w, f.Err()); err != nil {
		t.Fatal(err)
	}
	out, _, closed := logd.streams(t)
	if !bytes.Equal(out, want) || !closed {
		t.Fatalf("got %d/%d bytes, closed %v", len(out), len(want), closed)
	}
}

// Abandoning a forwarder whose logd stays down ends it at once, and its
// reader keeps draining the pipe so the job never blocks on it.
func TestAbandon(t *testing.T) {
	logd := &fakeLogd{}
	logd.setFail(func(int) (bool, int) { return true, 0 })
	opts := fastOpts()
	opts.BufferBytes = 64 << 10
	or, ow := pipe(t)
	f := Start(logd, "1", or, nil, opts)
	w := writeAll(ow, make([]byte, 4<<20), rand.New(rand.NewPCG(19, 20)))
	time.Sleep(50 * time.Millisecond)
	f.Abandon()
	if !errors.Is(f.Err(), ErrAbandoned) {
		t.Fatalf("err %v, want ErrAbandoned", f.Err())
	}
	select {
	case err := <-w:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer blocked after Abandon")
	}
}

// An error a retry cannot cure ends forwarding instead of looping forever.
func TestPermanentError(t *testing.T) {
	logd := &fakeLogd{closed: true}
	or, ow := pipe(t)
	f := Start(logd, "1", or, nil, fastOpts())
	w := writeAll(ow, []byte("hello"), rand.New(rand.NewPCG(1, 1)))
	waitDone(t, f, 10*time.Second)
	if !errors.Is(f.Err(), errdefs.ErrFailedPrecondition) {
		t.Fatalf("err %v, want a failed precondition", f.Err())
	}
	if err := <-w; err != nil {
		t.Fatal(err)
	}
}

// With no streams the forwarder just closes the log.
func TestCloseOnly(t *testing.T) {
	logd := &fakeLogd{}
	logd.setFail(func(call int) (bool, int) { return call < 3, 0 })
	f := Start(logd, "1", nil, nil, fastOpts())
	waitDone(t, f, 10*time.Second)
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, closed := logd.streams(t); !closed {
		t.Fatal("log not closed")
	}
}

// A pipe handed to Start is grown, so a fast job writes on while a batch is
// delivered.
func TestGrowPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	size := func() int {
		t.Helper()
		rc, err := r.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var ferr error
		if err := rc.Control(func(fd uintptr) { n, ferr = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0) }); err != nil {
			t.Fatal(err)
		}
		if ferr != nil {
			t.Fatal(ferr)
		}
		return n
	}
	if before := size(); before >= 1<<20 {
		t.Fatalf("a new pipe already holds %d bytes", before)
	}
	growPipe(r, 1<<20)
	if after := size(); after != 1<<20 {
		t.Fatalf("pipe holds %d bytes after growPipe, want %d", after, 1<<20)
	}
	growPipe(strings.NewReader("not a pipe"), 1<<20) // no effect, no panic
}
