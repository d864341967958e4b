package shimproc

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/logdapi/handover"
)

// forwarding starts a fake logd at sock and a forwarder of job j1's pipes
// to it; the test writes to outW and errW.
func forwarding(t *testing.T) (sock string, logd *fakeLogd, f *forwarder, outR, errR, outW, errW *os.File) {
	t.Helper()
	requiresRoot(t)
	sock = filepath.Join(t.TempDir(), "logd.sock")
	logd = &fakeLogd{}
	listen(t, sock, logd)
	outR, errR, outW, errW = jobPipes(t)
	return sock, logd, forward(sock, "j1", outR, errR), outR, errR, outW, errW
}

// holdWhenWaiting holds f once it waits for logd's answer.
func holdWhenWaiting(t *testing.T, f *forwarder) *handover.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, ok := f.hold(); ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("the forwarder never waited for logd's answer")
		}
		time.Sleep(time.Millisecond)
	}
}

// A forwarder held for parking reads nothing of logd's answer; the
// hand-over, passed on (as across the shim's execs) to a forwarder made
// with resumeForward, completes there: logd drained all along, and the
// log's end reaches the resumed one.
func TestForwarderParksAndResumes(t *testing.T) {
	sock, logd, f, outR, errR, outW, errW := forwarding(t)
	if _, err := outW.WriteString("hello, "); err != nil {
		t.Fatal(err)
	}
	c := holdWhenWaiting(t, f)
	kept, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	// The parked shim's exec closes every descriptor of the first
	// forwarder's; its goroutine stays held here.
	c.Close()
	resumed, err := handover.Resume(kept)
	kept.Close()
	if err != nil {
		t.Fatal(err)
	}
	g := resumeForward(sock, "j1", outR, errR, resumed)
	if _, err := outW.WriteString("world"); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	if err := g.await(10 * time.Second); err != nil {
		t.Fatalf("await after resuming: %v", err)
	}
	if got := logd.bytes(); got != "hello, world" {
		t.Fatalf("logd got %q", got)
	}
	select {
	case <-f.done:
		t.Fatal("the held forwarder went on")
	default:
	}
}

// A park that fails lets the forwarder go on: it reads logd's answer.
func TestForwarderUnheld(t *testing.T) {
	_, logd, f, _, _, outW, errW := forwarding(t)
	c := holdWhenWaiting(t, f)
	if _, ok := f.hold(); ok {
		t.Error("held twice")
	}
	if _, err := outW.WriteString("all"); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	time.Sleep(50 * time.Millisecond) // logd's answer arrives while held
	select {
	case <-f.done:
		t.Fatal("a held forwarder read logd's answer")
	default:
	}
	f.unhold(c)
	if err := f.await(10 * time.Second); err != nil {
		t.Fatalf("await: %v", err)
	}
	if got := logd.bytes(); got != "all" {
		t.Fatalf("logd got %q", got)
	}
}
