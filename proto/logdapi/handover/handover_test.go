package handover_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/logdapi/handover"
)

// The hand-written DrainRequest decodes as the generated type.
func TestRequestMatchesGeneratedType(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	// A short id, and one whose length takes a two-byte varint.
	for _, id := range []string{"job-17", strings.Repeat("j", 300)} {
		b := handover.EncodeRequest(id, []handover.Pipe{{Stream: handover.Stdout, File: r}, {Stream: handover.Stderr, File: r}})
		var req logdv1.DrainRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Fatal(err)
		}
		want := &logdv1.DrainRequest{JobId: id, Pipes: []*logdv1.DrainPipe{
			{Stream: jobletv1.Stream_STREAM_STDOUT, Index: 0},
			{Stream: jobletv1.Stream_STREAM_STDERR, Index: 1},
		}}
		if !proto.Equal(&req, want) {
			t.Fatalf("decoded %v, want %v", &req, want)
		}
	}
}

// A DrainResult from the generated type decodes by hand, unknown fields
// skipped.
func TestResultMatchesGeneratedType(t *testing.T) {
	b, err := proto.Marshal(&logdv1.DrainResult{Size: 1 << 40, Code: 9, Message: "log is shorter"})
	if err != nil {
		t.Fatal(err)
	}
	// Later fields of each wire type: varint, fixed64, length-delimited,
	// fixed32.
	b = append(b, 0xa0, 0x06, 0x01)
	b = append(b, 0xa9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8)
	b = append(b, 0xb2, 0x06, 0x02, 'h', 'i')
	b = append(b, 0xbd, 0x06, 1, 2, 3, 4)
	size, code, msg, err := handover.DecodeResult(b)
	if err != nil || size != 1<<40 || code != 9 || msg != "log is shorter" {
		t.Fatalf("DecodeResult: %d %d %q %v", size, code, msg, err)
	}
	// Cut inside a field, it is refused (never read past); cut between
	// fields, it is a shorter message. The fields end at these offsets:
	// size (tag + 6), code (tag + 1), message (tag + length + 14), then
	// the four above.
	ends := map[int]bool{7: true, 9: true, 25: true, 28: true, 38: true, 43: true, 49: true}
	if len(b) != 49 {
		t.Fatalf("the test's message is %d bytes, want 49", len(b))
	}
	for n := 1; n < len(b); n++ {
		if _, _, _, err := handover.DecodeResult(b[:n]); (err == nil) != ends[n] {
			t.Errorf("cut at %d bytes: %v", n, err)
		}
	}
}

// Any DrainResult the generated code writes decodes to its fields.
func FuzzDecodeResult(f *testing.F) {
	f.Add(int64(0), int32(0), "")
	f.Add(int64(-1), int32(-5), "x")
	f.Add(int64(1<<62), int32(16), "a longer message, with ü")
	f.Fuzz(func(t *testing.T, size int64, code int32, msg string) {
		if !utf8.ValidString(msg) {
			t.Skip("proto3 strings are UTF-8")
		}
		b, err := proto.Marshal(&logdv1.DrainResult{Size: size, Code: code, Message: msg})
		if err != nil {
			t.Fatal(err)
		}
		gs, gc, gm, err := handover.DecodeResult(b)
		if err != nil || gs != size || gc != code || gm != msg {
			t.Fatalf("decoded %d %d %q %v, want %d %d %q", gs, gc, gm, err, size, code, msg)
		}
	})
}

// storeDrainer stores what arrives on the pipes, as logd does, or fails
// with err.
type storeDrainer struct {
	got chan string
	err error
}

func (d storeDrainer) Drain(_ context.Context, jobID string, pipes []logdapi.Pipe) (int64, error) {
	if d.err != nil {
		return 0, d.err
	}
	var all []byte
	for _, p := range pipes {
		b, err := io.ReadAll(p.File)
		if err != nil {
			return 0, err
		}
		all = append(all, b...)
	}
	d.got <- jobID + ":" + string(all)
	return int64(len(all)), nil
}

// serve runs logd's side of the hand-over (logdapi.ServePipes) with d on a
// socket in a temporary directory and returns the socket.
func serve(t *testing.T, d logdapi.Drainer) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "logd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	pl := logdapi.ServePipes(l, d, zerolog.Nop())
	t.Cleanup(func() { pl.Close() })
	return sock
}

// Drain against logd's own server: the pipes' contents reach the Drainer
// and the size comes back; a refusal keeps its error kind. Root: logd takes
// pipes from root peers only.
func TestDrainAgainstLogdServer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: logd takes pipes from root peers only")
	}
	got := make(chan string, 1)
	sock := serve(t, storeDrainer{got: got})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString("hello"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	size, err := handover.Drain(ctx, sock, "j1", []handover.Pipe{{Stream: handover.Stdout, File: r}})
	if err != nil || size != 5 {
		t.Fatalf("Drain: %d, %v", size, err)
	}
	if g := <-got; g != "j1:hello" {
		t.Fatalf("logd got %q", g)
	}

	refusing := serve(t, storeDrainer{err: errdefs.Errorf(errdefs.ErrFailedPrecondition, "log is longer")})
	_, err = handover.Drain(ctx, refusing, "j2", []handover.Pipe{{Stream: handover.Stdout, File: r}})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("refused Drain: %v, want a failed precondition", err)
	}
}

// A socket that answers the greeting with anything else is not a logd that
// takes pipes; one that is not there is unavailable.
func TestDrainUnsupportedAndUnavailable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "logd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.ReadFull(c, make([]byte, len(handover.Magic)))
			_, _ = c.Write([]byte("HTTP/2"))
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx := context.Background()
	if _, err := handover.Drain(ctx, sock, "j", []handover.Pipe{{Stream: handover.Stdout, File: r}}); !errors.Is(err, handover.ErrUnsupported) {
		t.Fatalf("Drain to a non-logd: %v", err)
	}
	if _, err := handover.Drain(ctx, sock+".gone", "j", []handover.Pipe{{Stream: handover.Stdout, File: r}}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Drain to no socket: %v", err)
	}
}
