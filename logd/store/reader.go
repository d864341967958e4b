package store

import (
	"bufio"
	"fmt"
	"io"
	"os"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// reader walks one log file for one Read call. Its memory is two buffers of
// at most about maxChunk whatever the log's length, each sized to what there
// is to read, so the many short reads of short jobs stay small.
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

func newReader(f *os.File, start mark, from int64) *reader {
	return &reader{
		f:    f,
		pos:  start.pos,
		off:  start.off,
		from: from,
	}
}

// sendTo passes fn everything from the reader's position up to end, a frame
// boundary, splitting the frame that holds the first offset wanted.
func (r *reader) sendTo(end int64, fn func(logdapi.Record) error) error {
	src := io.NewSectionReader(r.f, r.pos, end-r.pos)
	if want := min(end-r.pos, maxChunk+hdrLen); r.br == nil || int64(r.br.Size()) < want && r.br.Size() < maxChunk+hdrLen {
		r.br = bufio.NewReaderSize(src, int(want))
	} else {
		r.br.Reset(src)
	}
	for r.pos < end {
		k, n, err := readHeader(r.br, &r.hdr)
		if err != nil {
			return fmt.Errorf("read log frame at %d: %w", r.pos, err)
		}
		r.pos += hdrLen + int64(n)
		stream, isData := k.stream()
		start := r.off
		if isData {
			r.off += int64(n)
		}
		if !isData || r.off <= r.from {
			if _, err := r.br.Discard(n); err != nil {
				return fmt.Errorf("read log frame: %w", err)
			}
			continue
		}
		skip := int(max(r.from-start, 0))
		if _, err := r.br.Discard(skip); err != nil {
			return fmt.Errorf("read log frame: %w", err)
		}
		want := n - skip
		if len(r.pend) > 0 && (stream != r.pendStream || len(r.pend)+want > maxChunk) {
			if err := r.flush(fn); err != nil {
				return err
			}
		}
		if len(r.pend) == 0 {
			r.pendStream, r.pendOff = stream, start+int64(skip)
			if r.pend == nil {
				// A chunk's own buffer, sized for what is left to send, so
				// that a quiet follower does not hold a large one.
				r.pend = make([]byte, 0, min(maxChunk, end-r.pos+int64(want)))
			}
		}
		l := len(r.pend)
		r.pend = r.pend[:l+want]
		if _, err := io.ReadFull(r.br, r.pend[l:]); err != nil {
			return fmt.Errorf("read log frame: %w", err)
		}
	}
	return r.flush(fn)
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
