package service

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/joblet-dev/joblet/logd/store"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// Drain through the socket: the pipe goes to logd with SCM_RIGHTS on a
// connection of its own, logd stores what it carries, and gRPC calls on the
// same socket still work; this process's own descriptor stays open and
// usable.
func TestDrainTakesPipes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: logd takes pipes only from a root peer")
	}
	l := start(t, t.TempDir())
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	go func() {
		w.Write(want)
		w.Close()
	}()
	size, err := l.Logd.(logdapi.Drainer).Drain(context.Background(), "7",
		[]logdapi.Pipe{{Stream: jobletv1.Stream_STREAM_STDOUT, File: r}})
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(want)) {
		t.Fatalf("size %d, want %d", size, len(want))
	}
	got, err := readAll(l, "7", false)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	// Still ours, still in non-blocking mode (a read finds EOF at once).
	if n, err := r.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("own end after the drain: %d, %v", n, err)
	}
}

// Only a pipe may be handed over.
func TestDrainRefusesNonPipes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: logd takes pipes only from a root peer")
	}
	l := start(t, t.TempDir())
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = l.Logd.(logdapi.Drainer).Drain(context.Background(), "8",
		[]logdapi.Pipe{{Stream: jobletv1.Stream_STREAM_STDOUT, File: f}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("drain of /dev/null: %v, want InvalidArgument", err)
	}
	// A hand-over that names a pipe but sends no descriptor.
	conn, err := net.Dial("unix", l.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := proto.Marshal(&logdv1.DrainRequest{JobId: "8", Pipes: []*logdv1.DrainPipe{{Stream: jobletv1.Stream_STREAM_STDOUT}}})
	conn.Write([]byte("JOBLET-PIPES/1\n"))
	conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(req))), req...))
	var n [4]byte
	if _, err := io.ReadFull(conn, n[:1]); err != nil || n[0] != '-' {
		t.Fatalf("first answer %q (%v), want a refusal", n[0], err)
	}
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	io.ReadFull(conn, b)
	var res logdv1.DrainResult
	if err := proto.Unmarshal(b, &res); err != nil || codes.Code(res.GetCode()) != codes.InvalidArgument {
		t.Fatalf("hand-over without descriptors: %v (%v)", &res, err)
	}
}

// A logd that predates Drain (its socket serves gRPC alone) gets the
// hand-over as a bad HTTP/2 greeting; the client reports
// ErrDrainUnsupported, so the writer falls back to Write.
func TestDrainOldLogd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "old.sock")
	l, err := transport.Listen(sock, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := grpc.NewServer()
	logdapi.Register(srv, st)
	go srv.Serve(l)
	defer srv.Stop()
	cc, err := transport.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = logdapi.NewClient(cc).(logdapi.Drainer).Drain(ctx, "9", []logdapi.Pipe{{Stream: jobletv1.Stream_STREAM_STDOUT, File: r}})
	if !errors.Is(err, logdapi.ErrDrainUnsupported) {
		t.Fatalf("drain on an old logd: %v, want ErrDrainUnsupported", err)
	}
}
