package store

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// reader walks one log file for one Read call, chunk by chunk. It reads
// headers and small frames through a small buffer, and the data of a large
// frame straight from the file into the chunk that is sent, so output is
// copied once on its way from the page cache to gRPC. A chunk another
// reader of the same log has just read at the same position is taken from
// the log's shared tail instead (shared.go).
type reader struct {
	f    *os.File
	br   *bufio.Reader
	pos  int64 // file position of the next frame
	off  int64 // stored offset of the next frame
	from int64 // the first offset wanted

	// br reads the file from brAt up to brEnd; brAt < 0 means it must be
	// pointed at pos again before it is used.
	brAt, brEnd int64
}

// readBuffer is the reader's buffer for headers and small frames; the data
// of a frame beyond what it holds is read directly into the chunk.
const readBuffer = 8 << 10

func newReader(f *os.File, start mark, from int64) *reader {
	return &reader{f: f, pos: start.pos, off: start.off, from: from, brAt: -1}
}

// chunkCap is the capacity of a pooled chunk buffer. It is larger than any
// chunk (maxChunk), so a buffer of exactly this capacity can only have come
// from the pool: chunks shared between readers are allocated to their size
// and are never recycled, since several sends may hold them at once.
const chunkCap = 64 << 10

// chunks are the buffers of full-size chunks, handed back with PutChunk
// once sent, so a long log streamed does not allocate (and clear, and
// collect) a fresh buffer per chunk.
var chunks = sync.Pool{New: func() any { b := make([]byte, 0, chunkCap); return &b }}

// PutChunk hands back the buffer of a chunk that Read passed on, once
// nothing uses it any more (gRPC has written it). Buffers Read did not take
// from the pool, shared chunks among them, are left to the garbage
// collector.
func PutChunk(b *[]byte) {
	if cap(*b) == chunkCap {
		*b = (*b)[:0]
		chunks.Put(b)
	}
}

// newChunk returns an empty buffer for a chunk of at most size bytes.
func newChunk(size int64, shared bool) []byte {
	if shared || size < maxChunk {
		// A chunk's own buffer sized to what is left, so that a quiet
		// follower does not hold a large one; a shared chunk is never
		// written again nor recycled, whoever sends it last.
		return make([]byte, 0, size)
	}
	return (*chunks.Get().(*[]byte))[:0]
}

// sendTo passes fn everything from the reader's position up to end, a frame
// boundary, or with a limit, whole chunks until at least limit bytes have
// been sent. It splits the frame that holds the first offset wanted. Chunks
// are taken from the log's tail when another reader has read them there,
// and put in it when another reader is close behind. at is the reader's
// position as the tail sees it.
func (r *reader) sendTo(end, limit int64, t *tail, at *atomic.Int64, fn func(logdapi.Record) error) error {
	var sent int64
	for r.pos < end && (limit == 0 || sent < limit) {
		rec, ok := r.shared(t)
		if !ok {
			pos := r.pos
			share := t.worth(at, pos)
			var err error
			if rec, err = r.next(end, share); err != nil {
				return err
			}
			if len(rec.Data) == 0 {
				return nil // only frames without output were left
			}
			if share {
				t.put(sharedChunk{pos: pos, next: r.pos, rec: rec})
			}
		}
		at.Store(r.pos)
		sent += int64(len(rec.Data))
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// shared takes what the reader wants next from a chunk in the tail, if one
// holds it: the chunk from that offset on.
func (r *reader) shared(t *tail) (logdapi.Record, bool) {
	want := max(r.off, r.from)
	c, ok := t.get(want)
	if !ok {
		return logdapi.Record{}, false
	}
	r.pos, r.off = c.next, c.rec.Offset+int64(len(c.rec.Data))
	r.brAt = -1
	return logdapi.Record{Stream: c.rec.Stream, Offset: want, Data: c.rec.Data[want-c.rec.Offset:]}, true
}

// next reads the next chunk from r.pos, at most up to end: the frames of one
// stream that follow each other, merged up to maxChunk, from the first
// offset wanted on. An empty chunk means no output was left before end.
func (r *reader) next(end int64, shared bool) (rec logdapi.Record, err error) {
	var (
		pend   []byte
		stream jobletv1.Stream
	)
	for r.pos < end {
		r.point(end)
		h, err := r.br.Peek(hdrLen)
		if err != nil {
			return rec, fmt.Errorf("read log frame at %d: %w", r.pos, err)
		}
		k, n, err := parseHeader(h)
		if err != nil {
			return rec, fmt.Errorf("read log frame at %d: %w", r.pos, err)
		}
		s, isData := k.stream()
		if !isData || r.off+int64(n) <= r.from {
			if isData {
				r.off += int64(n)
			}
			r.skip(hdrLen + n)
			continue
		}
		skip := int(max(r.from-r.off, 0))
		want := n - skip
		if pend != nil && (s != stream || len(pend)+want > maxChunk) {
			break // this frame starts the next chunk
		}
		if pend == nil {
			stream = s
			rec.Offset = r.off + int64(skip)
			pend = newChunk(min(maxChunk, end-r.pos), shared)
		}
		r.skip(hdrLen)
		l := len(pend)
		pend = pend[:l+want]
		if err := r.readData(pend[l:], skip, n); err != nil {
			return rec, err
		}
		r.off += int64(n)
	}
	rec.Stream, rec.Data = stream, pend
	return rec, nil
}

// point makes br read the file from r.pos up to end, unless it already does.
func (r *reader) point(end int64) {
	if r.brAt == r.pos && r.brEnd == end {
		return
	}
	src := io.NewSectionReader(r.f, r.pos, end-r.pos)
	// The buffer is sized to what there is to read, up to readBuffer, and
	// grows when a later stretch is longer: most logs read are a short
	// job's few bytes, and 1000 jobs allocated 9.6 MiB of 8 KiB buffers
	// for them, raising the heap a burst reaches (proto/daemon/gcload.go).
	if want := int(min(end-r.pos, readBuffer)); r.br == nil || r.br.Size() < want {
		r.br = bufio.NewReaderSize(src, want)
	} else {
		r.br.Reset(src)
	}
	r.brAt, r.brEnd = r.pos, end
}

// skip passes over n bytes at r.pos: from the buffer if it holds them,
// otherwise by moving on and pointing the buffer there when next used.
func (r *reader) skip(n int) {
	r.pos += int64(n)
	if n <= r.br.Buffered() {
		_, _ = r.br.Discard(n) // cannot fail: the bytes are buffered
		r.brAt = r.pos
		return
	}
	r.brAt = -1
}

// readData fills dst with a frame's data from byte skip on; the frame has n
// bytes of data at r.pos. What the small buffer holds is copied from it, the
// rest read from the file straight into dst. r.pos ends past the frame.
func (r *reader) readData(dst []byte, skip, n int) error {
	data := r.pos
	r.pos += int64(n)
	if n <= r.br.Buffered() {
		_, _ = r.br.Discard(skip) // buffered: cannot fail
		if _, err := io.ReadFull(r.br, dst); err != nil {
			return fmt.Errorf("read log frame: %w", err)
		}
		r.brAt = r.pos
		return nil
	}
	from := skip // bytes of the frame's data not wanted or already in dst
	if b := r.br.Buffered(); skip < b {
		_, _ = r.br.Discard(skip)
		if _, err := io.ReadFull(r.br, dst[:b-skip]); err != nil {
			return fmt.Errorf("read log frame: %w", err)
		}
		dst, from = dst[b-skip:], b
	}
	if _, err := r.f.ReadAt(dst, data+int64(from)); err != nil {
		return fmt.Errorf("read log frame at %d: %w", data, err)
	}
	r.brAt = -1
	return nil
}
