package output

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// drainLogd is a fakeLogd that takes the pipes as logd's store does,
// reading them in this process. Each call's behaviour comes from call: how
// many bytes it moves before it stops (-1: all), and the error it then
// returns.
type drainLogd struct {
	*fakeLogd
	mu    sync.Mutex
	calls int
	call  func(n int) (limit int64, err error)
	hang  bool // Drain takes nothing and returns only when its ctx ends
}

func (d *drainLogd) Drain(ctx context.Context, jobID string, pipes []logdapi.Pipe) (int64, error) {
	d.mu.Lock()
	d.calls++
	limit, failWith := d.call(d.calls)
	d.mu.Unlock()
	if d.hang {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		moved int64
	)
	stop := make(chan struct{})
	var once sync.Once
	for _, p := range pipes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4<<10)
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				mu.Lock()
				want := len(buf)
				if limit >= 0 {
					want = int(min(int64(want), limit-moved))
				}
				if want == 0 {
					mu.Unlock()
					once.Do(func() { close(stop) })
					return
				}
				// Reading under the lock keeps the count exact across the
				// two pipes; a pipe with nothing in it waits here, which is
				// fine for these tests' writers.
				p.File.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
				n, err := p.File.Read(buf[:want])
				if n > 0 {
					d.fakeLogd.mu.Lock()
					size := d.fakeLogd.size
					d.fakeLogd.mu.Unlock()
					if _, aerr := d.fakeLogd.Append(ctx, jobID, []logdapi.Record{{Stream: p.Stream, Data: buf[:n], Offset: size}}, false); aerr != nil {
						mu.Unlock()
						return
					}
					moved += int64(n)
				}
				mu.Unlock()
				if err != nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
					return // EOF
				}
			}
		}()
	}
	wg.Wait()
	for _, p := range pipes {
		p.File.SetReadDeadline(time.Time{}) // logd reads its own copies, without ours
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if failWith != nil {
		return 0, failWith
	}
	return d.fakeLogd.Append(ctx, jobID, nil, true)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (d *drainLogd) Stat(context.Context, string) (logdapi.Stat, error) {
	d.fakeLogd.mu.Lock()
	defer d.fakeLogd.mu.Unlock()
	return logdapi.Stat{Size: d.fakeLogd.size, Closed: d.fakeLogd.closed, Exists: true}, nil
}

// run starts a forwarder on two pipes fed with random data and checks that
// logd ends up with exactly that data.
func runDrain(t *testing.T, d *drainLogd) *Forwarder {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	wantOut, wantErr := randomBytes(rng, 2<<20+5), randomBytes(rng, 100<<10+7)
	rOut, wOut := pipe(t)
	rErr, wErr := pipe(t)
	f := Start(d, "1", rOut, rErr, fastOpts())
	e1, e2 := writeAll(wOut, wantOut, rng), writeAll(wErr, wantErr, rand.New(rand.NewPCG(5, 6)))
	if err := errors.Join(<-e1, <-e2); err != nil {
		t.Fatal(err)
	}
	waitDone(t, f, 20*time.Second)
	if err := f.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
	o, e, closed := d.streams(t)
	if !bytes.Equal(o, wantOut) || !bytes.Equal(e, wantErr) || !closed {
		t.Fatalf("logd has %d+%d bytes (closed %v), want %d+%d", len(o), len(e), closed, len(wantOut), len(wantErr))
	}
	if f.Size() != int64(len(wantOut)+len(wantErr)) {
		t.Fatalf("Size %d", f.Size())
	}
	return f
}

func TestDrainHandsOverPipes(t *testing.T) {
	d := &drainLogd{fakeLogd: &fakeLogd{}, call: func(int) (int64, error) { return -1, nil }}
	runDrain(t, d)
	if d.calls != 1 {
		t.Fatalf("%d drains, want 1", d.calls)
	}
}

// logd going away mid-drain: the pipes are handed over again, and the next
// drain goes on from where the log ends.
func TestDrainRetried(t *testing.T) {
	d := &drainLogd{fakeLogd: &fakeLogd{}, call: func(n int) (int64, error) {
		if n < 3 {
			return int64(n) * 300 << 10, errdefs.Errorf(errdefs.ErrUnavailable, "logd is down")
		}
		return -1, nil
	}}
	runDrain(t, d)
	if d.calls != 3 {
		t.Fatalf("%d drains, want 3", d.calls)
	}
}

// A logd that cannot take the pipes gets the output with Append, from the
// end of what a drain already stored.
func TestDrainUnsupportedFallsBack(t *testing.T) {
	d := &drainLogd{fakeLogd: &fakeLogd{}, call: func(int) (int64, error) {
		return 100 << 10, logdapi.ErrDrainUnsupported
	}}
	runDrain(t, d)
	if d.calls != 1 {
		t.Fatalf("%d drains, want 1", d.calls)
	}
}

// Abandoned while logd holds the pipes: the forwarder stops at once and the
// pipes are read empty, so the job never blocks on them.
func TestDrainAbandon(t *testing.T) {
	d := &drainLogd{fakeLogd: &fakeLogd{}, call: func(int) (int64, error) { return 0, nil }, hang: true}
	rOut, wOut := pipe(t)
	rErr, wErr := pipe(t)
	f := Start(d, "1", rOut, rErr, fastOpts())
	rng := rand.New(rand.NewPCG(1, 2))
	e1 := writeAll(wOut, randomBytes(rng, 8<<20), rng)
	wErr.Close()
	time.Sleep(50 * time.Millisecond)
	f.Abandon()
	if !errors.Is(f.Err(), ErrAbandoned) {
		t.Fatalf("Err: %v", f.Err())
	}
	select {
	case err := <-e1:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job's writes block after Abandon")
	}
}
