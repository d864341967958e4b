package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// indexEvery is how far apart, in file bytes, the index marks a frame start,
// so a reader starting mid-log skips to near its offset instead of scanning
// from the top. A 1 GiB log needs about a thousand marks.
const indexEvery = 1 << 20

// jobLog is one job's log: its file and what is known about it. The file
// holds the bytes; memory holds only sizes, a sparse index, while the log is
// open the write descriptor, and while it has several readers their tail.
type jobLog struct {
	path  string
	users int         // get calls not yet released; guarded by Store.mu
	ended atomic.Bool // the log is closed: once unused it can leave memory
	tail  tail        // its readers' shared chunks and turns
	sync  *syncer     // the Store's: its fsyncs
	// written is the Store's count of output bytes stored.
	written *atomic.Int64

	mu      sync.Mutex
	err     error    // set when the log cannot be used (load failed, store closed)
	f       *os.File // write descriptor; nil once the log is closed
	st      state
	index   []mark
	changed chan struct{} // closed and replaced on every change
	drain   chan struct{} // holds a token while a Drain moves output in
	// named, for a log this Store made, is closed once the directory fsync
	// load started for its new name is over (namedErr, set before); nil
	// once the name is known durable (awaitName), or for a log found on
	// disk.
	named    chan struct{}
	namedErr error
}

// state is what a file's frames add up to.
type state struct {
	end        int64 // file length: whole frames only
	size       int64 // accepted bytes: the writer's offsets
	stored     int64 // kept bytes, notice included: the reader's offsets
	truncated  bool  // the cap was hit and the notice written
	acceptedAt int64 // file position of the kindAccepted payload, 0 if none
	closed     bool
}

// mark is a frame start: its stored offset and file position.
type mark struct{ off, pos int64 }

// load opens (with create: makes) the file and rebuilds the state from it.
// l.mu is held.
func (l *jobLog) load(create bool, log zerolog.Logger) error {
	flags := os.O_RDWR | syscall.O_NOFOLLOW
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(l.path, flags, 0o600)
	if err != nil {
		return err
	}
	if create {
		// The new name must survive a crash, or the job's output would
		// vanish along with it: it is durable before the log's end is
		// (awaitName, at eof). Its fsync runs meanwhile, so that output
		// moves in, and readers read, without waiting for the disk; a job
		// that ends at once then waits for that fsync and its log's at the
		// same time, not one after the other. The output itself is not
		// durable before the end either (no fsync per append).
		named := make(chan struct{})
		l.named = named
		go func() {
			l.namedErr = l.sync.syncDir()
			close(named)
		}()
	} else if err := l.scan(f, log); err != nil {
		f.Close()
		return err
	}
	if l.st.closed {
		l.ended.Store(true)
		return f.Close()
	}
	l.f = f
	return nil
}

// scan rebuilds the state and index from the file, cutting off a torn or
// unreadable tail so appends continue on a clean frame boundary. It reads
// headers and small frames through a small buffer and seeks past the data
// of larger ones, so loading a long log (again, after it left memory) reads
// a fraction of it.
func (l *jobLog) scan(f *os.File, log zerolog.Logger) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	// Most logs are small, and a closed one is loaded again on each later
	// use: a buffer no larger than the file.
	br := bufio.NewReaderSize(f, int(min(size, readBuffer)))
	var (
		st   state
		hdr  [hdrLen]byte
		bad  error
		last int64
	)
	for bad == nil {
		k, n, err := readHeader(br, &hdr)
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && st.closed {
			err = fmt.Errorf("%w: frame after end of log", errCorrupt)
		}
		if err != nil {
			bad = err
			break
		}
		pos := st.end
		switch k {
		case kindAccepted:
			var p [acceptedLen]byte
			if _, err := io.ReadFull(br, p[:]); err != nil {
				bad = err
				continue
			}
			st.size = max(st.size, int64(binary.BigEndian.Uint64(p[:])))
			st.acceptedAt = pos + hdrLen
		case kindEOF:
			st.closed = true
		default:
			if got, err := skipData(f, br, n, size-(pos+hdrLen)); err != nil {
				if got > 0 && k != kindMarker && errors.Is(err, io.EOF) {
					// Output cut short at the end of the file: logd died
					// between a frame's header and the end of its data. The
					// bytes that arrived exist nowhere else any more (a drained
					// pipe gave them up; an Append writer resends only from the
					// size it is told), so they are kept, under a header that
					// says how many there are.
					if err := writeHeader(f, k, got, pos); err != nil {
						return fmt.Errorf("keep torn frame: %w", err)
					}
					log.Warn().Int("kept_bytes", got).Int("missing_bytes", n-got).
						Msg("log file ended inside a frame; kept the output it holds")
					n = got
				} else {
					bad = err
					continue
				}
			}
			if pos-last >= indexEvery {
				l.index = append(l.index, mark{off: st.stored, pos: pos})
				last = pos
			}
			st.stored += int64(n)
			if k == kindMarker {
				st.truncated = true
			} else {
				st.size += int64(n)
			}
		}
		st.end = pos + hdrLen + int64(n)
	}
	if bad != nil {
		if err := f.Truncate(st.end); err != nil {
			return fmt.Errorf("cut torn tail: %w", err)
		}
		log.Warn().Err(bad).Int64("kept_bytes", st.end).Int64("cut_bytes", size-st.end).
			Msg("log file had a torn or corrupt tail; cut it off")
	}
	l.st = st
	return nil
}

// skipData passes over a frame's n bytes of data, of which the file holds
// left: from br if it has them, otherwise by seeking f past them. Like
// bufio's Discard, it returns how many it passed and io.EOF when the file
// ends first.
func skipData(f *os.File, br *bufio.Reader, n int, left int64) (int, error) {
	if n <= br.Buffered() {
		return br.Discard(n)
	}
	got, err := n, error(nil)
	if int64(n) > left {
		got, err = int(max(left, 0)), io.EOF
	}
	if _, serr := f.Seek(int64(got-br.Buffered()), io.SeekCurrent); serr != nil {
		return 0, serr
	}
	br.Reset(f)
	return got, err
}

// append writes the new part of recs, then with eof closes the log. All
// frames of one call go out in one write; on failure the file is cut back
// and nothing changes.
func (l *jobLog) append(jobID string, recs []logdapi.Record, eof bool, limit int64) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(jobID, recs, eof, limit)
}

// appendLocked is append with l.mu held.
func (l *jobLog) appendLocked(jobID string, recs []logdapi.Record, eof bool, limit int64) (int64, error) {
	if l.err != nil {
		return 0, l.err
	}
	if err := l.check(jobID, recs); err != nil {
		return l.st.size, err
	}

	// The frames go out as one pwritev of their headers and the records'
	// own bytes: the output is not copied into a write buffer first.
	var fw frameWriter
	var marks []mark
	lastMark := int64(0)
	if len(l.index) > 0 {
		lastMark = l.index[len(l.index)-1].pos
	}
	next := l.st
	for _, r := range recs {
		if r.Offset+int64(len(r.Data)) <= next.size {
			continue // already have it
		}
		data := r.Data[next.size-r.Offset:]
		next.size += int64(len(data))
		if next.truncated {
			continue
		}
		keep := min(int64(len(data)), max(limit-next.stored, 0))
		k, _ := kindOf(r.Stream)
		for p := data[:keep]; len(p) > 0; {
			n := min(len(p), maxData)
			if pos := next.end + fw.size; pos-lastMark >= indexEvery {
				marks = append(marks, mark{off: next.stored, pos: pos})
				lastMark = pos
			}
			fw.add(k, p[:n])
			next.stored += int64(n)
			p = p[n:]
		}
		if keep < int64(len(data)) {
			notice := fmt.Appendf(nil, "\n[joblet: output truncated at %d bytes]\n", limit)
			fw.add(kindMarker, notice)
			next.stored += int64(len(notice))
			next.truncated = true
		}
	}
	// Past the cap the accepted size lives in one frame, rewritten in place,
	// so that a restarted logd still tells the writer the right offset
	// without the file growing with what it drops.
	rewrite := false
	if next.truncated && next.size != l.st.size {
		if next.acceptedAt == 0 {
			fw.add(kindAccepted, acceptedPayload(next.size))
			next.acceptedAt = next.end + fw.size - acceptedLen
		} else {
			rewrite = true
		}
	}
	if eof && !next.closed {
		fw.add(kindEOF, nil)
		next.closed = true
	}

	if rewrite {
		if _, err := l.f.WriteAt(acceptedPayload(next.size), next.acceptedAt); err != nil {
			return l.st.size, fmt.Errorf("write log of job %s: %w", jobID, noSpace(err, jobID))
		}
	}
	if fw.size > 0 {
		err := fw.writeAt(l.f, next.end)
		if err == nil && next.closed && !l.st.closed {
			// The job is over: make its output, and its log's name, durable
			// now.
			err = l.sync.file(l.f)
			if err == nil {
				err = l.awaitName()
			}
		}
		if err != nil {
			// Keep the file a clean run of whole frames.
			_ = l.f.Truncate(l.st.end)
			return l.st.size, fmt.Errorf("write log of job %s: %w", jobID, noSpace(err, jobID))
		}
		next.end += fw.size
	}

	if next == l.st {
		return next.size, nil
	}
	wasClosed := l.st.closed
	l.written.Add(next.stored - l.st.stored)
	l.st = next
	l.index = append(l.index, marks...)
	l.broadcast()
	if next.closed && !wasClosed {
		// Nothing more will be written; readers use their own descriptors.
		l.ended.Store(true)
		f := l.f
		l.f = nil
		if err := f.Close(); err != nil {
			return next.size, fmt.Errorf("close log of job %s: %w", jobID, err)
		}
	}
	return next.size, nil
}

// awaitName returns once the log's name is durable: the directory fsync
// load started is over (made again if it failed). l.mu is held.
func (l *jobLog) awaitName() error {
	if l.named == nil {
		return nil
	}
	<-l.named
	err := l.namedErr
	if err != nil {
		err = l.sync.syncDir()
	}
	if err == nil {
		l.named = nil
	}
	return err
}

// broadcast wakes every reader waiting for a change. l.mu is held.
func (l *jobLog) broadcast() {
	l.tail.wrote(l.st.stored, l.st.closed)
	close(l.changed)
	l.changed = make(chan struct{})
}

// check refuses a batch before anything of it is written: an unknown stream,
// a gap, or new output for a closed log. l.mu is held.
func (l *jobLog) check(jobID string, recs []logdapi.Record) error {
	size := l.st.size
	for _, r := range recs {
		if _, ok := kindOf(r.Stream); !ok {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "output record has unknown stream %d", r.Stream)
		}
		if r.Offset < 0 {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "output record has negative offset %d", r.Offset)
		}
		if r.Offset > size {
			return errdefs.Errorf(errdefs.ErrFailedPrecondition,
				"output of job %s at offset %d leaves a gap after %d", jobID, r.Offset, size)
		}
		end := r.Offset + int64(len(r.Data))
		if end <= size {
			continue
		}
		if l.st.closed {
			return errdefs.Errorf(errdefs.ErrFailedPrecondition, "output of job %s is closed", jobID)
		}
		size = end
	}
	return nil
}

func (l *jobLog) stat() (logdapi.Stat, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return logdapi.Stat{}, l.err
	}
	return logdapi.Stat{Size: l.st.size, Closed: l.st.closed, Exists: true}, nil
}

// snapshot is what a reader may read now (the file up to end), whether more
// can come, and a channel closed when it does.
func (l *jobLog) snapshot() (end int64, closed bool, changed <-chan struct{}, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.end, l.st.closed, l.changed, l.err
}

// seek returns the last indexed frame start at or before stored offset off.
func (l *jobLog) seek(off int64) (mark, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return mark{}, l.err
	}
	i := sort.Search(len(l.index), func(i int) bool { return l.index[i].off > off })
	if i == 0 {
		return mark{}, nil
	}
	return l.index[i-1], nil
}

// shut flushes and closes the file for good; later calls are refused.
func (l *jobLog) shut() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = errShutdown
	}
	if l.f == nil {
		return nil
	}
	err := errors.Join(l.sync.file(l.f), l.awaitName(), l.f.Close())
	l.f = nil
	return err
}

// noSpace gives a full log disk its kind (ResourceExhausted) and a message
// the writer and the user can act on; other errors stay as they are.
func noSpace(err error, jobID string) error {
	return errdefs.NoSpace(err, "log", "output of job "+jobID)
}
