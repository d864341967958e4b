package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// A log file is a sequence of frames, each a 5-byte header (kind, then the
// payload length as a big-endian uint32) and the payload. Frames are only
// ever appended, whole, with one pwrite, so a crash can leave at most one
// torn frame at the end, which the next open cuts off.
//
//	kindStdout, kindStderr  job output; payload is data (≤ maxData bytes)
//	kindMarker              the truncation notice, read back as stderr
//	kindAccepted            8-byte accepted size once the cap was hit
//	                        (rewritten in place, always the last frame
//	                        before kindEOF)
//	kindEOF                 the log is closed; empty payload, last frame
const (
	hdrLen = 5
	// maxData is the largest frame payload: just under 64 KiB, a pipe's worth.
	maxData = 64<<10 - 256
	// maxChunk is the largest chunk a reader is sent: consecutive frames of
	// one stream are merged up to it. It also bounds what a follower that
	// stops reading holds here (its chunk blocked in Send, one queued in
	// gRPC, its read buffer): 100 stalled followers cost logd about 3 MiB
	// with 64 KiB chunks against 70 MiB with 256 KiB ones, while the
	// attached-run throughput measured the same (bench/README.md). Just
	// under a power of two, so that a chunk with its message header fits
	// gRPC's 64 KiB buffer tier (transport.InstallBufferPool).
	maxChunk = 64<<10 - 256
)

type kind byte

const (
	kindStdout kind = iota + 1
	kindStderr
	kindMarker
	kindAccepted
	kindEOF
)

// acceptedLen is the payload length of a kindAccepted frame.
const acceptedLen = 8

// errCorrupt is a frame that cannot have been written by this package.
var errCorrupt = errors.New("corrupt log frame")

// kindOf maps a record's stream to its frame kind.
func kindOf(s jobletv1.Stream) (kind, bool) {
	switch s {
	case jobletv1.Stream_STREAM_STDOUT:
		return kindStdout, true
	case jobletv1.Stream_STREAM_STDERR:
		return kindStderr, true
	}
	return 0, false
}

// stream is the stream a data frame is read back as; ok is false for frames
// that carry no output.
func (k kind) stream() (s jobletv1.Stream, ok bool) {
	switch k {
	case kindStdout:
		return jobletv1.Stream_STREAM_STDOUT, true
	case kindStderr, kindMarker:
		return jobletv1.Stream_STREAM_STDERR, true
	}
	return 0, false
}

// frameWriter gathers frames as a list of buffers, each frame a small header
// followed by its payload where it already is, and writes them with pwritev.
type frameWriter struct {
	hdrs []byte   // every header, back to back
	iov  [][]byte // header, payload, header, payload, ...
	size int64    // bytes in iov
}

// add queues one frame. payload must not change until writeAt returns.
func (w *frameWriter) add(k kind, payload []byte) {
	if w.hdrs == nil {
		w.hdrs = make([]byte, 0, 16*hdrLen)
	}
	if cap(w.hdrs)-len(w.hdrs) < hdrLen {
		// A new array: the headers already in iov keep pointing at the old one.
		w.hdrs = make([]byte, 0, 2*cap(w.hdrs))
	}
	h := len(w.hdrs)
	w.hdrs = append(w.hdrs, byte(k))
	w.hdrs = binary.BigEndian.AppendUint32(w.hdrs, uint32(len(payload)))
	w.iov = append(w.iov, w.hdrs[h:h+hdrLen:h+hdrLen])
	if len(payload) > 0 {
		w.iov = append(w.iov, payload)
	}
	w.size += int64(hdrLen + len(payload))
}

// writeHeader writes, at file position pos, the header of a frame of kind k
// and payload length n.
func writeHeader(f *os.File, k kind, n int, pos int64) error {
	var hdr [hdrLen]byte
	hdr[0] = byte(k)
	binary.BigEndian.PutUint32(hdr[1:], uint32(n))
	_, err := f.WriteAt(hdr[:], pos)
	return err
}

// maxIOV is the most buffers one pwritev takes (the kernel's UIO_MAXIOV).
const maxIOV = 1024

// writeAt writes every queued frame at file position pos, as few pwritev
// calls as the kernel allows.
func (w *frameWriter) writeAt(f *os.File, pos int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	iov := w.iov
	var werr error
	cerr := rc.Control(func(fd uintptr) {
		for len(iov) > 0 && werr == nil {
			var n int
			n, werr = unix.Pwritev(int(fd), iov[:min(len(iov), maxIOV)], pos)
			if errors.Is(werr, unix.EINTR) {
				werr = nil
				continue
			}
			if werr == nil && n == 0 {
				werr = io.ErrShortWrite
			}
			pos += int64(n)
			// Drop what was written: whole buffers, then part of one.
			for n > 0 && len(iov) > 0 {
				if n < len(iov[0]) {
					iov[0] = iov[0][n:]
					break
				}
				n -= len(iov[0])
				iov = iov[1:]
			}
		}
	})
	return errors.Join(cerr, werr)
}

// acceptedPayload encodes a kindAccepted payload.
func acceptedPayload(size int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(size))
}

// readHeader reads and checks one frame header. It returns io.EOF at a clean
// end and io.ErrUnexpectedEOF inside a torn header.
func readHeader(r io.Reader, hdr *[hdrLen]byte) (kind, int, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	return parseHeader(hdr[:])
}

// parseHeader checks and decodes the frame header at the start of h.
func parseHeader(h []byte) (kind, int, error) {
	k, n := kind(h[0]), int(binary.BigEndian.Uint32(h[1:hdrLen]))
	ok := false
	switch k {
	case kindStdout, kindStderr, kindMarker:
		ok = n > 0 && n <= maxData
	case kindAccepted:
		ok = n == acceptedLen
	case kindEOF:
		ok = n == 0
	}
	if !ok {
		return 0, 0, fmt.Errorf("%w: kind %d length %d", errCorrupt, k, n)
	}
	return k, n, nil
}
