package logstream

import (
	"bytes"
	"errors"
	"io"
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

type fakeStream struct {
	chunks []*jobletv1.LogChunk
	end    error
}

func (f *fakeStream) Recv() (*jobletv1.LogChunk, error) {
	if len(f.chunks) == 0 {
		return nil, f.end
	}
	c := f.chunks[0]
	f.chunks = f.chunks[1:]
	return c, nil
}

func chunk(s jobletv1.Stream, data string) *jobletv1.LogChunk {
	return &jobletv1.LogChunk{Stream: s, Data: []byte(data)}
}

func TestCopySplitsStreamsByteExact(t *testing.T) {
	binary := string([]byte{0, 1, 0xff, '\r', 0x1b, 'x'})
	src := &fakeStream{end: io.EOF, chunks: []*jobletv1.LogChunk{
		chunk(jobletv1.Stream_STREAM_STDOUT, "out 1\n"),
		chunk(jobletv1.Stream_STREAM_STDERR, "err 1\n"),
		chunk(jobletv1.Stream_STREAM_STDOUT, "no newline"),
		chunk(jobletv1.Stream_STREAM_STDOUT, binary),
		chunk(jobletv1.Stream_STREAM_STDERR, "err 2"),
	}}
	var out, errOut bytes.Buffer
	if err := Copy(src, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if want := "out 1\nno newline" + binary; out.String() != want {
		t.Errorf("stdout = %q, want %q", out.String(), want)
	}
	if want := "err 1\nerr 2"; errOut.String() != want {
		t.Errorf("stderr = %q, want %q", errOut.String(), want)
	}
}

func TestCopyLargeOutput(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	src := &fakeStream{end: io.EOF}
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 32<<10+7)
		src.chunks = append(src.chunks, &jobletv1.LogChunk{Stream: jobletv1.Stream_STREAM_STDOUT, Data: rest[:n]})
		rest = rest[n:]
	}
	var out bytes.Buffer
	if err := Copy(src, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("output differs: got %d bytes, want %d", out.Len(), len(want))
	}
}

func TestCopyReportsStreamError(t *testing.T) {
	boom := errors.New("stream broke")
	src := &fakeStream{end: boom, chunks: []*jobletv1.LogChunk{chunk(jobletv1.Stream_STREAM_STDOUT, "partial")}}
	var out bytes.Buffer
	if err := Copy(src, &out, io.Discard); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if out.String() != "partial" {
		t.Errorf("stdout = %q, want the data before the error", out.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestCopyStopsOnWriteError(t *testing.T) {
	src := &fakeStream{end: io.EOF, chunks: []*jobletv1.LogChunk{chunk(jobletv1.Stream_STREAM_STDOUT, "x")}}
	if err := Copy(src, failWriter{}, io.Discard); err == nil || err.Error() != "disk full" {
		t.Fatalf("err = %v, want disk full", err)
	}
}

// genStream makes its chunks at Recv time in buffers from ChunkBuffer, as
// rnx's codec does, so buffers Copy has recycled are filled again while
// earlier chunks may still be queued.
type genStream struct {
	n, i int
	want bytes.Buffer
}

func (g *genStream) Recv() (*jobletv1.LogChunk, error) {
	if g.i == g.n {
		return nil, io.EOF
	}
	size := []int{1, 100, 64<<10 - 256, ChunkBufferSize, ChunkBufferSize + 1, 4096}[g.i%6]
	data := ChunkBuffer(size)
	for j := range data {
		data[j] = byte(g.i + j*7)
	}
	g.want.Write(data)
	g.i++
	return &jobletv1.LogChunk{Stream: jobletv1.Stream_STREAM_STDOUT, Data: data}, nil
}

// Output in recycled chunk buffers arrives byte-exact: a buffer goes back to
// the pool only once its chunk is written.
func TestCopyRecycledBuffersByteExact(t *testing.T) {
	src := &genStream{n: 600}
	var out, errOut bytes.Buffer
	if err := Copy(src, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), src.want.Bytes()) || errOut.Len() != 0 {
		t.Fatalf("stdout %d bytes (equal: %v), stderr %d bytes; want %d bytes on stdout",
			out.Len(), bytes.Equal(out.Bytes(), src.want.Bytes()), errOut.Len(), src.want.Len())
	}
}

// recordingWriter keeps the first byte's address of every write.
type recordingWriter struct {
	bytes.Buffer
	starts []*byte
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.starts = append(w.starts, &p[0])
	return w.Buffer.Write(p)
}

// A large chunk is written from its own buffer, not copied into Copy's;
// small chunks are gathered into fewer writes. Output stays byte-exact and
// in order.
func TestCopyWritesLargeChunksDirectly(t *testing.T) {
	large := bytes.Repeat([]byte("L"), 64<<10-256)
	src := &fakeStream{end: io.EOF}
	var want []byte
	const rounds = 8
	for i := range rounds {
		small := []byte{byte('a' + i)}
		src.chunks = append(src.chunks,
			&jobletv1.LogChunk{Stream: jobletv1.Stream_STREAM_STDOUT, Data: small},
			&jobletv1.LogChunk{Stream: jobletv1.Stream_STREAM_STDOUT, Data: small},
			&jobletv1.LogChunk{Stream: jobletv1.Stream_STREAM_STDOUT, Data: large})
		want = append(append(append(want, small...), small...), large...)
	}
	var w recordingWriter
	if err := Copy(src, &w, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.Bytes(), want) {
		t.Fatalf("stdout: %d bytes, want %d (equal: false)", w.Len(), len(want))
	}
	direct := 0
	for _, p := range w.starts {
		if p == &large[0] {
			direct++
		}
	}
	// Each round: its two small chunks in one write, then the large one.
	if direct != rounds || len(w.starts) != 2*rounds {
		t.Errorf("%d writes for %d chunks, %d of them from the large chunk's own buffer; want %d, %d",
			len(w.starts), 3*rounds, direct, 2*rounds, rounds)
	}
}
