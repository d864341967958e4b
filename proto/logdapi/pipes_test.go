package logdapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"

	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
)

// peerSocketEnv, set, makes TestPipesOnlyFromRoot the peer: it connects
// to that socket as the unprivileged user it was started as.
const peerSocketEnv = "JOBLET_TEST_PIPES_PEER"

// countingDrainer counts the hand-overs that reach it.
type countingDrainer struct{ calls atomic.Int32 }

func (d *countingDrainer) Drain(context.Context, string, []Pipe) (int64, error) {
	d.calls.Add(1)
	return 0, nil
}

// A peer that is not root (the gateway's uid may connect to logd's socket)
// is refused with PermissionDenied before logd reads its request, and the
// Drainer never sees it: what pipes carry becomes a job's output.
func TestPipesOnlyFromRoot(t *testing.T) {
	if sock := os.Getenv(peerSocketEnv); sock != "" {
		peer(t, sock)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the peer runs as another user")
	}
	// Reachable by the unprivileged peer: a world-usable socket in a
	// world-searchable directory, with a copy of this test binary to run.
	dir, err := os.MkdirTemp("", "joblet-pipes-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "logd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	d := &countingDrainer{}
	pl := ServePipes(l, d, zerolog.Nop())
	defer pl.Close()
	go func() { // the gRPC side: nothing is expected there
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			t.Errorf("a connection reached gRPC")
			c.Close()
		}
	}()
	exe := filepath.Join(dir, "peer.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestPipesOnlyFromRoot$", "-test.v")
	cmd.Env = append(os.Environ(), peerSocketEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer: %v\n%s", err, out)
	}
	if want := "answer: refused, " + codes.PermissionDenied.String(); !strings.Contains(string(out), want) {
		t.Fatalf("peer's output has no %q:\n%s", want, out)
	}
	if n := d.calls.Load(); n != 0 {
		t.Fatalf("the Drainer was called %d times", n)
	}
}

// peer hands a pipe over as the client does, and prints logd's answer.
func peer(t *testing.T, sock string) {
	if os.Geteuid() == 0 {
		t.Fatal("the peer must not be root")
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	req, err := frame(&logdv1.DrainRequest{JobId: "1", Pipes: []*logdv1.DrainPipe{{Index: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	uc := c.(*net.UnixConn)
	if _, err := uc.Write([]byte(pipesMagic)); err != nil {
		t.Fatal(err)
	}
	// The refusal may come before the request is read, and the socket be
	// closed: a failed write is not the answer.
	_, _, _ = uc.WriteMsgUnix(req, syscall.UnixRights(int(r.Fd())), nil)
	var first [1]byte
	if _, err := io.ReadFull(uc, first[:]); err != nil {
		t.Fatal(err)
	}
	var res logdv1.DrainResult
	// logd closes at once, with the request unread: the socket is reset
	// once the answer has been read.
	rest, err := io.ReadAll(uc)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	if err := readFramed(bytes.NewReader(rest), &res); err != nil {
		t.Fatal(err)
	}
	what := "taken"
	if first[0] == pipesRefused {
		what = "refused"
	}
	fmt.Printf("answer: %s, %s: %s\n", what, codes.Code(res.GetCode()), res.GetMessage())
}

// recordingDrainer records the hand-over it gets: the job, and each
// pipe's stream and inode (the pipe is closed once Drain returns).
type recordingDrainer struct {
	job  chan string
	pipe chan [2]uint64
}

func (d *recordingDrainer) Drain(_ context.Context, jobID string, pipes []Pipe) (int64, error) {
	d.job <- jobID
	for _, p := range pipes {
		var st syscall.Stat_t
		_ = syscall.Fstat(int(p.File.Fd()), &st)
		d.pipe <- [2]uint64{uint64(p.Stream), st.Ino}
	}
	return 0, nil
}

// A request longer than logd's first read of it (which takes the
// descriptors) is read whole, and its pipe works: the first read is small
// so that a hand-over allocates little.
func TestLongPipeRequest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: logd takes pipes from root only")
	}
	sock := filepath.Join(t.TempDir(), "logd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &recordingDrainer{job: make(chan string, 1), pipe: make(chan [2]uint64, 2)}
	pl := ServePipes(l, d, zerolog.Nop())
	defer pl.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	m, err := frame(&logdv1.DrainRequest{JobId: "12345", Pipes: []*logdv1.DrainPipe{{Index: 0, Stream: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	// Pad the message with an unknown field (number 15, bytes) of 4000
	// bytes: it must still parse, and the frame's length must cover it.
	pad := append([]byte{15<<3 | 2, 0xa0, 0x1f}, bytes.Repeat([]byte{'x'}, 4000)...)
	body := append(m[4:], pad...)
	req := append([]byte{byte(len(body) >> 24), byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	if _, err := uc.Write([]byte(pipesMagic)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := uc.WriteMsgUnix(req, syscall.UnixRights(int(r.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	if got := <-d.job; got != "12345" {
		t.Fatalf("job %q, want 12345", got)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(r.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if got, want := <-d.pipe, [2]uint64{2, st.Ino}; got != want {
		t.Errorf("pipe (stream, inode) %v, want %v", got, want)
	}
}
