package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The journal is a magic header followed by entries, each framed as
//
//	length  uint32 LE  of the payload
//	crc     uint32 LE  CRC-32C of id and payload
//	id      uint64 LE  the job's id
//	payload            the record's on-disk form (file, JSON)
//
// An entry is believed only whole and with its checksum right, and only if
// every entry before it is: a torn or corrupt entry ends the journal.
const (
	journalName  = "journal"
	tempName     = "journal.tmp" // a compaction's new journal until renamed
	magic        = "JBLJRNL1"
	headerLen    = 16
	maxPayload   = 16 << 20 // far above any record; a larger length is corruption
	compactSlack = 1 << 20  // see maybeCompact
)

// defaultMinFree is the free space an append must leave on the state disk
// for unprivileged writers (statfs f_bavail), or it is refused as ENOSPC.
// A filesystem takes an append into a block the file already has even when
// it is full, so without this a full disk would refuse some records and
// take others, by where the journal's end falls; with it, a full disk
// refuses every record the same way. Counting what unprivileged writers
// may use, though the isolator is root, leaves the filesystem's own
// reserves (ext4 keeps some blocks even from root, and 5% for root by
// default) to the rest of what runs as root: logd's logs of the running
// jobs, netd's and the scheduler's state.
const defaultMinFree = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (s *Store) journalPath() string { return filepath.Join(s.dir, journalName) }

// batch is the entries appended while the writer was busy: written with
// one write and, if durable, one fdatasync.
type batch struct {
	buf      []byte
	n        int           // entries in buf
	durable  bool          // a Save is among the entries
	written  chan struct{} // closed once buf is written (or failed: writeErr)
	synced   chan struct{} // closed after written, once durable (or failed: syncErr)
	writeErr error
	syncErr  error
}

// append frames payload as id's entry and waits until the writer has
// written it, and if durable until it is on disk.
func (s *Store) append(id uint64, payload []byte, durable bool) error {
	b := s.enqueue(id, payload, durable)
	<-b.written
	if b.writeErr != nil || !durable {
		return b.writeErr
	}
	<-b.synced
	return b.syncErr
}

// enqueue frames payload as id's entry in the batch the writer takes next,
// starting the writer if none runs, and returns that batch.
func (s *Store) enqueue(id uint64, payload []byte, durable bool) *batch {
	s.jmu.Lock()
	b := s.next
	if b == nil {
		b = &batch{written: make(chan struct{}), synced: make(chan struct{})}
		s.next = b
	}
	b.buf = appendFrame(b.buf, id, payload)
	b.n++
	b.durable = b.durable || durable
	if !s.writing {
		// No goroutine waits while the store is idle; one is started for
		// each busy spell and is the only one touching the journal.
		s.writing = true
		go s.writer()
	}
	s.jmu.Unlock()
	return b
}

func appendFrame(buf []byte, id uint64, payload []byte) []byte {
	var h [headerLen]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:], id)
	crc := crc32.Update(crc32.Update(0, castagnoli, h[8:]), castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:], crc)
	return append(append(buf, h[:]...), payload...)
}

// writer commits the pending batches in turn until there are none.
func (s *Store) writer() {
	for {
		s.jmu.Lock()
		b := s.next
		s.next = nil
		if b == nil {
			s.writing = false
			s.idle.Broadcast()
			s.jmu.Unlock()
			return
		}
		s.jmu.Unlock()
		s.commit(b)
		s.maybeCompact()
	}
}

// flush waits until every entry appended so far is written.
func (s *Store) flush() {
	s.jmu.Lock()
	for s.writing {
		s.idle.Wait()
	}
	s.jmu.Unlock()
}

// commit writes b at the journal's end and syncs it if durable. A failed
// write or sync cuts the journal back to where b began (now or, failing
// that, before the next batch), so that no part of b is ever followed by
// another entry: the entries of a failed batch are lost, every other one
// stays readable.
func (s *Store) commit(b *batch) {
	err := s.cut()
	if err == nil {
		err = s.reserve(len(b.buf))
	}
	if err == nil {
		_, err = s.f.WriteAt(b.buf, s.end)
		// Even a write that reports nothing written can leave the file
		// longer (tmpfs does, on ENOSPC).
		s.dirty = err != nil
	}
	if err != nil {
		b.writeErr = fmt.Errorf("append to %s: %w", s.journalPath(), bare(err))
		_ = s.cut() // or before the next batch
		close(b.written)
		close(b.synced)
		return
	}
	start := s.end
	s.end += int64(len(b.buf))
	close(b.written)
	if b.durable {
		if err := s.sync(s.f); err != nil {
			// What the failed sync left on disk is unknown: the batch is
			// taken back, its Updates with it.
			b.syncErr = fmt.Errorf("sync %s: %w", s.journalPath(), bare(err))
			s.log.Error().Err(err).Int("records", b.n).Msg("cannot sync the job journal; the records of this batch are dropped")
			s.end, s.dirty = start, true
			_ = s.cut()
		}
	}
	close(b.synced)
}

// bare drops the file name from err: the journal's file may be the one a
// compaction wrote under its temporary name and renamed since.
func bare(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// cut truncates the journal back to its last whole entry after a failed
// write.
func (s *Store) cut() error {
	if !s.dirty {
		return nil
	}
	if err := s.f.Truncate(s.end); err != nil {
		return fmt.Errorf("cut %s back after a failed write: %w", s.journalPath(), bare(err))
	}
	s.dirty = false
	return nil
}

// reserve refuses an append of n bytes that would leave less than
// s.minFree on the journal's filesystem (see defaultMinFree).
func (s *Store) reserve(n int) error {
	if s.minFree == 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(s.f.Fd()), &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if int64(st.Bavail)*st.Bsize < int64(n)+s.minFree {
		return unix.ENOSPC
	}
	return nil
}

// sync is fdatasync, counted: the file's size (what reading it back needs)
// is synced with the data, its times are not.
func (s *Store) sync(f *os.File) error {
	s.syncs.Add(1)
	if s.beforeSync != nil {
		if err := s.beforeSync(); err != nil {
			return err
		}
	}
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// maybeCompact rewrites the journal once it has grown past twice its size
// after the last compaction plus compactSlack: often enough that it stays
// within a small multiple of the live records, rarely enough that the copy
// costs little per entry. It runs in the writer between batches, so the
// callers that come meanwhile wait for it (a few ms for thousands of
// records); a failure leaves the journal as it was, and is logged.
func (s *Store) maybeCompact() {
	if s.end <= 2*s.compacted+compactSlack {
		return
	}
	start := time.Now()
	before := s.end
	if err := s.compact(); err != nil {
		s.log.Warn().Err(err).Msg("cannot compact the job journal; it goes on growing")
		// Not again before as much has been appended once more.
		s.compacted = s.end
		return
	}
	s.log.Debug().Int64("from", before).Int64("to", s.end).Dur("took", time.Since(start)).Msg("job journal compacted")
}

// compact rewrites the journal with the latest entry of each id.
func (s *Store) compact() error {
	latest := map[uint64]span{}
	if _, _, err := scan(s.f, s.end, func(id uint64, sp span) { latest[id] = sp }); err != nil {
		return err
	}
	f, size, err := s.writeJournal(s.f, latest, nil)
	if err != nil {
		return err
	}
	_ = s.f.Close()
	s.f, s.end, s.compacted, s.dirty = f, size, size, false
	return nil
}

// span is where an entry is in a journal: its frame's offset and length.
type span struct {
	off int64
	n   int
}

// scan reads the entries of the journal r (size bytes, magic included) in
// order, calling fn for each whole one. It returns where the whole entries
// end and, if that is before size, why the rest is not believed. An
// error is returned only when r cannot be read or is not a journal.
func scan(r io.ReaderAt, size int64, fn func(id uint64, sp span)) (end int64, bad error, err error) {
	if size < int64(len(magic)) {
		return 0, nil, fmt.Errorf("not a job journal (%d bytes)", size)
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10)
	var h [headerLen]byte
	if _, err := io.ReadFull(br, h[:len(magic)]); err != nil {
		return 0, nil, fmt.Errorf("read journal header: %w", err)
	}
	if string(h[:len(magic)]) != magic {
		return 0, nil, fmt.Errorf("not a job journal (header %q)", h[:len(magic)])
	}
	off := int64(len(magic))
	var payload []byte
	for off < size {
		if size-off < headerLen {
			return off, fmt.Errorf("torn entry header at %d", off), nil
		}
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return 0, nil, fmt.Errorf("read journal: %w", err)
		}
		n := int64(binary.LittleEndian.Uint32(h[0:]))
		if n == 0 || n > maxPayload {
			return off, fmt.Errorf("bad entry length %d at %d", n, off), nil
		}
		if size-off-headerLen < n {
			return off, fmt.Errorf("torn entry at %d (%d of %d bytes)", off, size-off-headerLen, n), nil
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(br, payload); err != nil {
			return 0, nil, fmt.Errorf("read journal: %w", err)
		}
		if crc := crc32.Update(crc32.Update(0, castagnoli, h[8:]), castagnoli, payload); crc != binary.LittleEndian.Uint32(h[4:]) {
			return off, fmt.Errorf("bad checksum of the entry at %d", off), nil
		}
		fn(binary.LittleEndian.Uint64(h[8:]), span{off: off, n: int(headerLen + n)})
		off += headerLen + n
	}
	return off, nil, nil
}

// writeJournal writes a new journal with, in increasing id order, the
// entries of src at the spans of latest and the legacy payloads (an id in
// both takes src's), durably under a temporary name, then renames it over
// the journal and syncs the directory. It returns the new journal, open
// for appending, and its size.
func (s *Store) writeJournal(src io.ReaderAt, latest map[uint64]span, legacy map[uint64][]byte) (*os.File, int64, error) {
	tmp := filepath.Join(s.dir, tempName)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	ids := slices.Sorted(maps.Keys(latest))
	for id := range legacy {
		if _, dup := latest[id]; !dup {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	w := bufio.NewWriterSize(f, 64<<10)
	size := int64(len(magic))
	if _, err := w.WriteString(magic); err != nil {
		return nil, 0, fmt.Errorf("write %s: %w", tmp, err)
	}
	var frame []byte
	for _, id := range ids {
		if sp, ok := latest[id]; ok {
			frame = slices.Grow(frame[:0], sp.n)[:sp.n]
			if _, err := src.ReadAt(frame, sp.off); err != nil {
				return nil, 0, fmt.Errorf("read journal entry of job %d: %w", id, err)
			}
		} else {
			frame = appendFrame(frame[:0], id, legacy[id])
		}
		if _, err := w.Write(frame); err != nil {
			return nil, 0, fmt.Errorf("write %s: %w", tmp, err)
		}
		size += int64(len(frame))
	}
	if err := w.Flush(); err != nil {
		return nil, 0, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := s.sync(f); err != nil {
		return nil, 0, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.journalPath()); err != nil {
		return nil, 0, fmt.Errorf("install %s: %w", s.journalPath(), err)
	}
	ok = true
	if err := syncDir(s.dir); err != nil {
		// The new journal is in place, and holds what the old one did.
		s.log.Warn().Err(err).Msg("cannot sync the state directory after compacting the job journal")
	}
	return f, size, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// openJournal reads the journal back at Open, takes in the records of the
// old layout, and writes the compacted journal that the Store then appends
// to. It returns the largest id found.
//
// A bad entry ends what is believed of the journal: a power loss in the
// middle of an append tears the last entry, and nothing after a bad entry
// can be told apart from garbage. A bad entry that is the journal's last
// (it runs to the end of the file) is such a torn append, logged as a
// warning. One followed by more bytes is damage the isolator did not do: it
// is logged as an error, the records before it are kept, and the journal as
// it was is kept aside as journal.corrupt-<unix time> for a person to look
// at; the id counter (a file of its own) still keeps the ids of the records
// lost from being handed out again.
func (s *Store) openJournal() (maxID uint64, err error) {
	_ = os.Remove(filepath.Join(s.dir, tempName)) // a compaction cut short: the journal is whole
	latest := map[uint64]span{}
	var src *os.File
	switch f, err := os.Open(s.journalPath()); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("open %s: %w", s.journalPath(), err)
	default:
		defer f.Close()
		src = f
		st, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("stat %s: %w", s.journalPath(), err)
		}
		end, bad, err := scan(f, st.Size(), func(id uint64, sp span) { latest[id] = sp })
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", s.journalPath(), err)
		}
		if bad != nil {
			s.reportBad(f, st.Size(), end, bad)
		}
	}
	legacy, legacyDir, err := s.readLegacy()
	if err != nil {
		return 0, err
	}
	for id := range latest {
		maxID = max(maxID, id)
	}
	for id := range legacy {
		maxID = max(maxID, id)
	}
	f, size, err := s.writeJournal(src, latest, legacy)
	if err != nil {
		return 0, fmt.Errorf("compact the job journal: %w", err)
	}
	s.f, s.end, s.compacted = f, size, size
	if legacyDir {
		// Only now that the journal holding them is durable.
		if err := os.RemoveAll(filepath.Join(s.dir, legacyDirName)); err != nil {
			s.log.Warn().Err(err).Msg("cannot remove the job records of the old layout; they are in the journal")
		} else if len(legacy) > 0 {
			s.log.Info().Int("records", len(legacy)).Msg("job records moved into the journal")
		}
	}
	return maxID, nil
}

// reportBad logs why the journal (size bytes) is believed only up to end,
// and keeps a copy of a journal damaged in its middle.
func (s *Store) reportBad(f *os.File, size, end int64, bad error) {
	log := s.log.With().Str("journal", s.journalPath()).Int64("kept", end).Int64("dropped", size-end).AnErr("why", bad).Logger()
	if !corruptMiddle(f, size, end) {
		log.Warn().Msg("job journal ends in a torn entry (the machine stopped during a write?); it is cut off")
		return
	}
	aside := s.journalPath() + ".corrupt-" + strconv.FormatInt(time.Now().Unix(), 10)
	if err := copyFile(f, aside); err != nil {
		log.Error().Err(err).Msg("job journal is damaged in its middle; the records after the damage are lost, and a copy could not be kept")
		return
	}
	log.Error().Str("copy", aside).Msg("job journal is damaged in its middle; the records after the damage are lost (a copy of the journal is kept)")
}

// corruptMiddle says whether the bad entry at end is followed by more than
// its own frame would hold, or by anything but zeros: not a torn last
// append.
func corruptMiddle(f *os.File, size, end int64) bool {
	var h [headerLen]byte
	if _, err := f.ReadAt(h[:], end); err == nil {
		n := int64(binary.LittleEndian.Uint32(h[0:]))
		if n > 0 && n <= maxPayload && end+headerLen+n >= size {
			return false // the last frame, cut short or with its checksum wrong
		}
	}
	rest := io.NewSectionReader(f, end, size-end)
	buf := make([]byte, 32<<10)
	for {
		n, err := rest.Read(buf)
		for _, c := range buf[:n] {
			if c != 0 {
				return size-end > headerLen // a few bytes: a torn header
			}
		}
		if err != nil {
			return false // zeros to the end: blocks allocated, never written
		}
	}
}

func copyFile(src *os.File, to string) error {
	d, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(d, io.NewSectionReader(src, 0, 1<<62))
	if err == nil {
		err = d.Sync()
	}
	return errors.Join(err, d.Close())
}

// Read returns the records stored in dir, in increasing id order, as a
// Store opened there would load them, but changes nothing: no repair,
// compaction or migration. It may run while a Store has dir open (it sees
// the entries written so far) and is what tests use to look at the disk.
func Read(dir string) ([]Record, error) {
	path := filepath.Join(dir, journalName)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	latest := map[uint64]span{}
	if _, _, err := scan(f, st.Size(), func(id uint64, sp span) { latest[id] = sp }); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	recs := make([]Record, 0, len(latest))
	var frame []byte
	for _, id := range slices.Sorted(maps.Keys(latest)) {
		sp := latest[id]
		frame = slices.Grow(frame[:0], sp.n)[:sp.n]
		if _, err := f.ReadAt(frame, sp.off); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		r, err := decode(frame[headerLen:])
		if err != nil {
			return nil, fmt.Errorf("decode job %d's record in %s: %w", id, path, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}
