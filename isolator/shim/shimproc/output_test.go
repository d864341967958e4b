package shimproc

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// fakeLogd stores what it drains from the pipes, as logd does; with
// failAfter > 0 it takes that many bytes and then fails, as a logd that
// is stopped mid-drain: the rest stays in the pipes.
type fakeLogd struct {
	mu        sync.Mutex
	got       []byte
	failAfter int
	refuse    error
}

func (l *fakeLogd) Drain(ctx context.Context, _ string, pipes []logdapi.Pipe) (int64, error) {
	if l.refuse != nil {
		return 0, l.refuse
	}
	buf := make([]byte, 1)
	for _, p := range pipes {
		for {
			l.mu.Lock()
			if l.failAfter > 0 && len(l.got) >= l.failAfter {
				l.failAfter = 0
				l.mu.Unlock()
				return 0, errdefs.Errorf(errdefs.ErrUnavailable, "stopping")
			}
			l.mu.Unlock()
			n, err := p.File.Read(buf)
			l.mu.Lock()
			l.got = append(l.got, buf[:n]...)
			l.mu.Unlock()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return 0, err
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.got)), nil
}

func (l *fakeLogd) bytes() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.got)
}

// listen serves logd's side of the hand-over with d at sock.
func listen(t *testing.T, sock string, d logdapi.Drainer) net.Listener {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	pl := logdapi.ServePipes(l, d, zerolog.Nop())
	t.Cleanup(func() { pl.Close() })
	return pl
}

func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: logd takes pipes from root peers only")
	}
}

// jobPipes are a job's stdout and stderr: the write ends for the test, the
// read ends for the forwarder.
func jobPipes(t *testing.T) (outR, errR, outW, errW *os.File) {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err = os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return outR, errR, outW, errW
}

// The output reaches logd through the pipes; logd stopping mid-drain loses
// nothing: the next logd on the same socket is handed the pipes and takes
// the rest.
func TestForwarderHandsPipesAgainAfterLogdRestart(t *testing.T) {
	requiresRoot(t)
	sock := filepath.Join(t.TempDir(), "logd.sock")
	first := &fakeLogd{failAfter: 5}
	l := listen(t, sock, first)
	outR, errR, outW, errW := jobPipes(t)
	f := forward(sock, "j1", outR, errR)
	if _, err := outW.WriteString("hello, "); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(first.bytes()) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the first logd got %q", first.bytes())
		}
		time.Sleep(time.Millisecond)
	}
	// The first logd is gone for good; the next one listens on its socket.
	l.Close()
	os.Remove(sock)
	second := &fakeLogd{}
	listen(t, sock, second)
	if _, err := outW.WriteString("world"); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	if err := f.await(10 * time.Second); err != nil {
		t.Fatalf("await: %v", err)
	}
	if got := first.bytes() + second.bytes(); got != "hello, world" || second.bytes() == "" {
		t.Fatalf("logd got %q then %q", first.bytes(), second.bytes())
	}
}

// Without a logd, await gives up after its time, and the pipes are still
// read, so the job never blocks on a full one.
func TestForwarderAbandonsAndDrains(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-logd.sock")
	outR, errR, outW, errW := jobPipes(t)
	defer errW.Close()
	f := forward(sock, "j2", outR, errR)
	if err := f.await(50 * time.Millisecond); !errors.Is(err, errAbandoned) {
		t.Fatalf("await without logd: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := outW.Write(make([]byte, 4<<20)) // more than the pipe holds
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job's write blocked on an abandoned pipe")
	}
	outW.Close()
}

// A logd that refuses the output (its log is not this output's) ends the
// delivery at once, with the refusal.
func TestForwarderStopsOnRefusal(t *testing.T) {
	requiresRoot(t)
	sock := filepath.Join(t.TempDir(), "logd.sock")
	listen(t, sock, &fakeLogd{refuse: errdefs.Errorf(errdefs.ErrFailedPrecondition, "log is longer")})
	outR, errR, outW, errW := jobPipes(t)
	defer outW.Close()
	defer errW.Close()
	f := forward(sock, "j3", outR, errR)
	if err := f.await(10 * time.Second); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("await: %v, want the refusal", err)
	}
}
