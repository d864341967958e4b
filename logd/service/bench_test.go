package service

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// benchChunk is one pipe read's worth of output, the unit a writer sends.
var benchChunk = bytes.Repeat([]byte("joblet output line 0123456789\n"), 32<<10/30)

// BenchmarkAppendRead measures job output through logd's socket against the
// floor it cannot beat: the same bytes written straight into a file. Each
// iteration moves 64 MiB; b.SetBytes makes go test print MB/s.
func BenchmarkAppendRead(b *testing.B) {
	const total = 64 << 20
	const perCall = 32 // records per Append, 1 MiB
	chunks := total / len(benchChunk)
	size := int64(chunks * len(benchChunk))

	b.Run("raw-file", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(size)
		for i := range b.N {
			f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			for range chunks {
				if _, err := f.Write(benchChunk); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil { // logd syncs at eof too
				b.Fatal(err)
			}
			f.Close()
		}
	})

	d := start(b, b.TempDir())
	ctx := context.Background()
	appendAll := func(b *testing.B, id string) {
		var off int64
		for off < size {
			batch := make([]logdapi.Record, 0, perCall)
			for len(batch) < perCall && off < size {
				batch = append(batch, logdapi.Record{Stream: jobletv1.Stream_STREAM_STDOUT, Offset: off, Data: benchChunk})
				off += int64(len(benchChunk))
			}
			if _, err := d.Append(ctx, id, batch, false); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := d.Append(ctx, id, nil, true); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("append", func(b *testing.B) {
		b.SetBytes(size)
		for i := range b.N {
			appendAll(b, strconv.Itoa(i+1))
		}
	})
	b.Run("read", func(b *testing.B) {
		appendAll(b, "0")
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			var n int64
			err := d.Read(ctx, "0", 0, false, func(r logdapi.Record) error {
				n += int64(len(r.Data))
				return nil
			})
			if err != nil || n != size {
				b.Fatalf("read %d of %d bytes: %v", n, size, err)
			}
		}
	})
}
