package store

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// reader walks one log file for one Read call. It reads headers and small
// frames through a small buffer, and the data of a large frame straight
// from the file into the chunk that is sent, so output is copied once on
// its way from the page cache to gRPC.
type reader struct {
	f    *os.File
	br   *bufio.Reader
	hdr  [hdrLen]byte
	pos  int64 // file position of the next frame
	off  int64 // stored offset of the next frame
	from int64 // the first offset wanted

	// pending output, merged across frames of one stream into chunks of up
	// to maxChunk so that many small writes do not become many messages
	pend       []byte
	pendStream jobletv1.Stream
	pendOff    int64
}

// readBuffer is the reader's buffer for headers and small frames; the data
// of a frame beyond what it holds is read directly into the chunk.
const readBuffer = 8 << 10

func newReader(f *os.File, start mark, from int64) *reader {
	return &reader{
		f:    f,
		pos:  start.pos,
		off:  start.off,
		from: from,
	}
}

// chunks are the buffers of full-size chunks, handed back with PutChunk
// once sent, so a long log streamed does not allocate (and clear, and
// collect) a fresh buffer per chunk.
var chunks = sync.Pool{New: func() any { b := make([]byte, 0, maxChunk); return &b }}

// PutChunk hands back the buffer of a chunk that Read passed on, once
// nothing uses it any more (gRPC has written it). Buffers Read did not take
// from the pool are left to the garbage collector.
func PutChunk(b *[]byte) {
	if cap(*b) == maxChunk {
		*b = (*b)[:0]
		chunks.Put(b)
	}
}

func newChunk(size int64) []byte {
	if size < maxChunk {
		// A chunk's own buffer sized to what is left, so that a quiet
		// follower does not hold a large one.
		return make([]byte, 0, size)
	}
	return (*chunks.Get().(*[]byte))[:0]
}

// sendTo passes fn everything from the reader's position up to end, a frame
// boundary, splitting the frame that holds the first offset wanted.
func (r *reader) sendTo(end int64, fn func(logdapi.Record) error) error {
	r.reset(end)
	for r.pos < end {
		k, n, err := readHeader(r.br, &r.hdr)
		if err != nil {
			return fmt.Errorf("read log frame at %d: %w", r.pos, err)
		}
		data := r.pos + hdrLen // file position of the frame's data
		r.pos = data + int64(n)
		stream, isData := k.stream()
		start := r.off
		if isData {
			r.off += int64(n)
		}
		if !isData || r.off <= r.from {
			if err := r.skip(n, end); err != nil {
				return err
			}
			continue
		}
		skip := int(max(r.from-start, 0))
		want := n - skip
		if len(r.pend) > 0 && (stream != r.pendStream || len(r.pend)+want > maxChunk) {
			if err := r.flush(fn); err != nil {
				return err
			}
		}
		if len(r.pend) == 0 {
			r.pendStream, r.pendOff = stream, start+int64(skip)
			if r.pend == nil {
				r.pend = newChunk(min(maxChunk, end-r.pos+int64(want)))
			}
		}
		l := len(r.pend)
		r.pend = r.pend[:l+want]
		if err := r.readData(r.pend[l:], skip, n, data, end); err != nil {
			return err
		}
	}
	return r.flush(fn)
}

// reset points the small buffer at the file from r.pos up to end.
func (r *reader) reset(end int64) {
	src := io.NewSectionReader(r.f, r.pos, end-r.pos)
	if r.br == nil {
		r.br = bufio.NewReaderSize(src, readBuffer)
	} else {
		r.br.Reset(src)
	}
}

// skip passes over n bytes of frame data.
func (r *reader) skip(n int, end int64) error {
	if n <= r.br.Buffered() {
		_, err := r.br.Discard(n)
		return err
	}
	r.reset(end) // r.pos is already past the frame
	return nil
}

// readData fills dst with a frame's data from byte skip on; the frame has n
// bytes of data at file position data. What the small buffer holds is
// copied from it, the rest read from the file straight into dst.
func (r *reader) readData(dst []byte, skip, n int, data, end int64) error {
	if n <= r.br.Buffered() {
		if _, err := r.br.Discard(skip); err != nil {
			return fmt.Errorf("read log frame: %w", err)
		}
		if _, err := io.ReadFull(r.br, dst); err != nil {
			return fmt.Errorf("read log frame: %w", err)
		}
		return nil
	}
	from := skip // bytes of the frame's data not wanted or already in dst
	if b := r.br.Buffered(); skip < b {
		if _, err := r.br.Discard(skip); err != nil {
			return fmt.Errorf("read log frame: %w", err)
		}
		if _, err := io.ReadFull(r.br, dst[:b-skip]); err != nil {
			return fmt.Errorf("read log frame: %w", err)
		}
		dst, from = dst[b-skip:], b
	}
	if _, err := r.f.ReadAt(dst, data+int64(from)); err != nil {
		return fmt.Errorf("read log frame at %d: %w", data, err)
	}
	r.reset(end) // r.pos is already past the frame
	return nil
}

// flush hands the pending chunk to fn, which may keep it: the reader never
// writes to a chunk's buffer again, so the bytes read from the file reach
// gRPC without another copy.
func (r *reader) flush(fn func(logdapi.Record) error) error {
	if len(r.pend) == 0 {
		return nil
	}
	rec := logdapi.Record{Stream: r.pendStream, Offset: r.pendOff, Data: r.pend}
	r.pend = nil
	return fn(rec)
}
