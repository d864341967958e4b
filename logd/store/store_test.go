package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

const (
	out  = jobletv1.Stream_STREAM_STDOUT
	errS = jobletv1.Stream_STREAM_STDERR
)

func open(t testing.TB, dir string, limit int64) *Store {
	t.Helper()
	s, err := Open(dir, Options{MaxLogBytes: limit, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rec(s jobletv1.Stream, off int64, data string) logdapi.Record {
	return logdapi.Record{Stream: s, Offset: off, Data: []byte(data)}
}

func mustAppend(t *testing.T, s *Store, id string, eof bool, recs ...logdapi.Record) int64 {
	t.Helper()
	n, err := s.Append(context.Background(), id, recs, eof)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return n
}

// readAll reads jobID's log from off without following.
func readAll(t *testing.T, s *Store, id string, off int64) []logdapi.Record {
	t.Helper()
	var recs []logdapi.Record
	err := s.Read(context.Background(), id, off, false, func(r logdapi.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return recs
}

// flat is a log as one string per stream tag: "o:" or "e:" before every byte
// run, so both order and stream are compared.
func flat(t *testing.T, recs []logdapi.Record, from int64) string {
	t.Helper()
	var b bytes.Buffer
	next := from
	for _, r := range recs {
		if r.Offset != next {
			t.Fatalf("record at offset %d, want %d", r.Offset, next)
		}
		if len(r.Data) == 0 || len(r.Data) > maxChunk {
			t.Fatalf("record of %d bytes", len(r.Data))
		}
		next += int64(len(r.Data))
		tag := "o:"
		if r.Stream == errS {
			tag = "e:"
		}
		b.WriteString(tag)
		b.Write(r.Data)
		b.WriteString("|")
	}
	return b.String()
}

// bytesOf is the log's bytes without streams.
func bytesOf(recs []logdapi.Record) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, r.Data...)
	}
	return b
}

func wantKind(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("got error %v, want %v", err, kind)
	}
}

func TestOrderAcrossStreams(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	mustAppend(t, s, "1", false, rec(out, 0, "a"), rec(errS, 1, "bb"))
	mustAppend(t, s, "1", false, rec(out, 3, "ccc"))
	n := mustAppend(t, s, "1", false, rec(out, 6, "d"), rec(errS, 7, "e"))
	if n != 8 {
		t.Fatalf("size %d, want 8", n)
	}
	if got, want := flat(t, readAll(t, s, "1", 0), 0), "o:a|e:bb|o:cccd|e:e|"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Starting inside a record splits it.
	if got, want := flat(t, readAll(t, s, "1", 2), 2), "e:b|o:cccd|e:e|"; got != want {
		t.Fatalf("from 2: got %q, want %q", got, want)
	}
	if got := readAll(t, s, "1", 8); len(got) != 0 {
		t.Fatalf("from the end: got %v", got)
	}
}

func TestDedup(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	mustAppend(t, s, "7", false, rec(out, 0, "hello"))
	// A full resend changes nothing.
	if n := mustAppend(t, s, "7", false, rec(out, 0, "hello")); n != 5 {
		t.Fatalf("size after resend %d", n)
	}
	// A partial overlap keeps only the new tail; so does an overlap inside
	// one batch.
	n := mustAppend(t, s, "7", false, rec(out, 2, "llo, "), rec(errS, 7, "world"), rec(errS, 9, "rld!"))
	if n != 13 {
		t.Fatalf("size %d, want 13", n)
	}
	if got, want := flat(t, readAll(t, s, "7", 0), 0), "o:hello, |e:world!|"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestGapRefused(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	_, err := s.Append(context.Background(), "2", []logdapi.Record{rec(out, 3, "x")}, false)
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	// A batch with a gap writes nothing, not even its good first part.
	_, err = s.Append(context.Background(), "2", []logdapi.Record{rec(out, 0, "ab"), rec(out, 5, "x")}, false)
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	st, err := s.Stat(context.Background(), "2")
	if err != nil || st != (logdapi.Stat{Exists: true}) {
		t.Fatalf("stat %+v %v", st, err)
	}
	_, err = s.Append(context.Background(), "2", []logdapi.Record{{Stream: jobletv1.Stream_STREAM_UNSPECIFIED, Data: []byte("x")}}, false)
	wantKind(t, err, errdefs.ErrInvalidArgument)
}

func TestEOF(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	mustAppend(t, s, "3", true, rec(out, 0, "done\n"))
	st, err := s.Stat(context.Background(), "3")
	if err != nil || st != (logdapi.Stat{Size: 5, Closed: true, Exists: true}) {
		t.Fatalf("stat %+v %v", st, err)
	}
	_, err = s.Append(context.Background(), "3", []logdapi.Record{rec(out, 5, "more")}, false)
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	// eof again, and a writer resending what it already sent, are fine.
	if n := mustAppend(t, s, "3", true); n != 5 {
		t.Fatalf("size %d", n)
	}
	mustAppend(t, s, "3", true, rec(out, 0, "done\n"))
	if got := string(bytesOf(readAll(t, s, "3", 0))); got != "done\n" {
		t.Fatalf("got %q", got)
	}
}

func TestNotFound(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	err := s.Read(context.Background(), "9", 0, false, func(logdapi.Record) error { return nil })
	wantKind(t, err, errdefs.ErrNotFound)
	st, err := s.Stat(context.Background(), "9")
	if err != nil || st.Exists {
		t.Fatalf("stat %+v %v", st, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = s.Read(ctx, "9", 0, true, func(logdapi.Record) error { return nil })
	wantKind(t, err, context.DeadlineExceeded)
}

func TestInvalidIDs(t *testing.T) {
	dir := t.TempDir()
	s := open(t, filepath.Join(dir, "logd"), 0)
	ctx := context.Background()
	for _, id := range []string{"", "abc", "../1", "1/2", "/etc/passwd", "1.log", "-1", " 1", "1\x00", "123456789012345678901"} {
		_, err := s.Append(ctx, id, []logdapi.Record{rec(out, 0, "x")}, true)
		wantKind(t, err, errdefs.ErrInvalidArgument)
		_, err = s.Stat(ctx, id)
		wantKind(t, err, errdefs.ErrInvalidArgument)
		err = s.Read(ctx, id, 0, true, func(logdapi.Record) error { return nil })
		wantKind(t, err, errdefs.ErrInvalidArgument)
	}
	mustAppend(t, s, "12345678901234567890", true, rec(out, 0, "x")) // 20 digits is fine
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "logd" {
		t.Fatalf("files outside the store: %v", ents)
	}
	ents, _ = os.ReadDir(filepath.Join(dir, "logd"))
	if len(ents) != 1 {
		t.Fatalf("store holds %v", ents)
	}
	err := s.Read(ctx, "1", -1, false, func(logdapi.Record) error { return nil })
	wantKind(t, err, errdefs.ErrInvalidArgument)
}

// writeRandom appends about n bytes to id in records of random size and
// stream, in batches, and returns the log as flat would show it.
func writeRandom(t *testing.T, s *Store, id string, n int, seed uint64) []logdapi.Record {
	t.Helper()
	var key [32]byte
	key[0] = byte(seed)
	src := rand.NewChaCha8(key)
	rng := rand.New(src)
	var all []logdapi.Record
	var off int64
	for off < int64(n) {
		var batch []logdapi.Record
		for range 1 + rng.IntN(8) {
			d := make([]byte, 1+rng.IntN(100_000))
			src.Read(d)
			st := out
			if rng.IntN(3) == 0 {
				st = errS
			}
			batch = append(batch, logdapi.Record{Stream: st, Offset: off, Data: d})
			off += int64(len(d))
		}
		mustAppend(t, s, id, false, batch...)
		all = append(all, batch...)
	}
	return all
}

// streamOf lists, per byte, which stream it came on.
func streamOf(recs []logdapi.Record) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, bytes.Repeat([]byte{byte(r.Stream)}, len(r.Data))...)
	}
	return b
}

func TestReadFromAnyOffset(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	want := writeRandom(t, s, "4", 5<<20, 1) // several index marks
	wb, ws := bytesOf(want), streamOf(want)
	for _, off := range []int64{0, 1, 65535, 65536, 1 << 20, 1<<20 + 7, 3<<20 - 1, int64(len(wb)) - 1, int64(len(wb))} {
		got := readAll(t, s, "4", off)
		flat(t, got, off) // checks offsets are contiguous from off
		if !bytes.Equal(bytesOf(got), wb[off:]) || !bytes.Equal(streamOf(got), ws[off:]) {
			t.Fatalf("from %d: wrong bytes", off)
		}
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	want := writeRandom(t, s, "5", 3<<20, 2)
	mustAppend(t, s, "6", true, rec(out, 0, "closed"))
	before := readAll(t, s, "5", 0)
	st5, _ := s.Stat(context.Background(), "5")
	s.Close()

	s = open(t, dir, 0) // logd restarted
	after := readAll(t, s, "5", 0)
	if flat(t, after, 0) != flat(t, before, 0) || !bytes.Equal(bytesOf(after), bytesOf(want)) {
		t.Fatal("log differs after restart")
	}
	if st, _ := s.Stat(context.Background(), "5"); st != st5 {
		t.Fatalf("stat %+v, want %+v", st, st5)
	}
	if st, _ := s.Stat(context.Background(), "6"); st != (logdapi.Stat{Size: 6, Closed: true, Exists: true}) {
		t.Fatalf("closed log: %+v", st)
	}
	// Appends continue at the right offset.
	_, err := s.Append(context.Background(), "5", []logdapi.Record{rec(out, st5.Size+1, "x")}, false)
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	if n := mustAppend(t, s, "5", false, rec(out, st5.Size-1, "yz")); n != st5.Size+1 {
		t.Fatalf("size %d, want %d", n, st5.Size+1)
	}
	_, err = s.Append(context.Background(), "6", []logdapi.Record{rec(out, 6, "x")}, false)
	wantKind(t, err, errdefs.ErrFailedPrecondition)
}

func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	mustAppend(t, s, "8", false, rec(out, 0, "whole"), rec(errS, 5, "frames"))
	s.Close()
	path := filepath.Join(dir, "8.log")
	clean, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, tail := range map[string][]byte{
		"torn header": appendFrame(nil, kindStdout, []byte("lost"))[:3],
		"no data":     appendFrame(nil, kindStderr, []byte("lost"))[:hdrLen],
		"garbage":     {0, 0, 0, 0, 0, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, append(bytes.Clone(clean), tail...), 0o600); err != nil {
				t.Fatal(err)
			}
			s := open(t, dir, 0)
			if st, _ := s.Stat(context.Background(), "8"); st.Size != 11 || st.Closed {
				t.Fatalf("stat %+v", st)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, clean) {
				t.Fatalf("file is %d bytes, want the %d clean ones", len(b), len(clean))
			}
			mustAppend(t, s, "8", true, rec(out, 11, "!"))
			if got, want := flat(t, readAll(t, s, "8", 0), 0), "o:whole|e:frames|o:!|"; got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			s.Close()
		})
	}
}

// follow reads id with follow into a buffer until the log closes.
func follow(ctx context.Context, s *Store, id string) ([]logdapi.Record, error) {
	var recs []logdapi.Record
	err := s.Read(ctx, id, 0, true, func(r logdapi.Record) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

func TestFollowLive(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		recs []logdapi.Record
		err  error
	}
	done := make(chan result, 1)
	// The follower comes before the job's log exists.
	go func() { r, err := follow(ctx, s, "10"); done <- result{r, err} }()

	var sent []logdapi.Record
	var off int64
	for i := range 200 {
		r := rec(out, off, fmt.Sprintf("line %d\n", i))
		if i%7 == 0 {
			r.Stream = errS
		}
		mustAppend(t, s, "10", false, r)
		sent = append(sent, r)
		off += int64(len(r.Data))
		select {
		case res := <-done:
			t.Fatalf("follower ended early: %v", res.err)
		default:
		}
	}
	mustAppend(t, s, "10", true)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if !bytes.Equal(bytesOf(res.recs), bytesOf(sent)) || !bytes.Equal(streamOf(res.recs), streamOf(sent)) {
		t.Fatal("follower got different bytes")
	}
	flat(t, res.recs, 0)
}

func TestManyFollowers(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 50
	got := make([][]logdapi.Record, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = follow(ctx, s, "11") })
	}
	want := writeRandom(t, s, "11", 2<<20, 3)
	mustAppend(t, s, "11", true)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("follower %d: %v", i, errs[i])
		}
		if !bytes.Equal(bytesOf(got[i]), bytesOf(want)) || !bytes.Equal(streamOf(got[i]), streamOf(want)) {
			t.Fatalf("follower %d got different bytes", i)
		}
	}
}

func TestCap(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 100)
	if n := mustAppend(t, s, "12", false, rec(out, 0, string(bytes.Repeat([]byte("o"), 60)))); n != 60 {
		t.Fatalf("size %d", n)
	}
	// This one crosses the cap: 40 bytes are kept, then the notice.
	if n := mustAppend(t, s, "12", false, rec(errS, 60, string(bytes.Repeat([]byte("e"), 60)))); n != 120 {
		t.Fatalf("size %d, want 120", n)
	}
	// Past the cap the writer is still told its bytes were taken.
	if n := mustAppend(t, s, "12", false, rec(out, 120, "dropped"), rec(out, 127, "too")); n != 130 {
		t.Fatalf("size %d, want 130", n)
	}
	if n := mustAppend(t, s, "12", false, rec(out, 125, "dropped!")); n != 133 {
		t.Fatalf("size %d, want 133 after a partial resend", n)
	}
	_, err := s.Append(context.Background(), "12", []logdapi.Record{rec(out, 140, "gap")}, false)
	wantKind(t, err, errdefs.ErrFailedPrecondition)

	notice := "\n[joblet: output truncated at 100 bytes]\n"
	want := "o:" + string(bytes.Repeat([]byte("o"), 60)) + "|e:" + string(bytes.Repeat([]byte("e"), 40)) + notice + "|"
	if got := flat(t, readAll(t, s, "12", 0), 0); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	fi, _ := os.Stat(filepath.Join(dir, "12.log"))
	s.Close()

	s = open(t, dir, 100)
	if st, _ := s.Stat(context.Background(), "12"); st != (logdapi.Stat{Size: 133, Exists: true}) {
		t.Fatalf("stat after restart %+v", st)
	}
	for i := range 100 { // the file does not grow with what is dropped
		mustAppend(t, s, "12", false, rec(out, 133+int64(i)*10, "0123456789"))
	}
	if fi2, _ := os.Stat(filepath.Join(dir, "12.log")); fi2.Size() != fi.Size() {
		t.Fatalf("file grew from %d to %d bytes", fi.Size(), fi2.Size())
	}
	mustAppend(t, s, "12", true)
	if got := flat(t, readAll(t, s, "12", 0), 0); got != want {
		t.Fatalf("after restart got %q", got)
	}
	if st, _ := s.Stat(context.Background(), "12"); st != (logdapi.Stat{Size: 1133, Closed: true, Exists: true}) {
		t.Fatalf("stat %+v", st)
	}
}

func TestCloseEndsFollowers(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	mustAppend(t, s, "13", false, rec(out, 0, "x"))
	done := make(chan error, 2)
	go func() { _, err := follow(context.Background(), s, "13"); done <- err }()
	go func() { _, err := follow(context.Background(), s, "14"); done <- err }()
	time.Sleep(20 * time.Millisecond) // let both start waiting
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		wantKind(t, <-done, errdefs.ErrUnavailable)
	}
	_, err := s.Append(context.Background(), "13", nil, true)
	wantKind(t, err, errdefs.ErrUnavailable)
}

// appendFrame appends one frame to buf.
func appendFrame(buf []byte, k kind, payload []byte) []byte {
	buf = append(buf, byte(k))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
	return append(buf, payload...)
}

// One append of more frames than one pwritev takes (each record is a frame
// and a frame is two buffers), alternating streams, some records larger than
// a frame: every byte is kept, in order, and survives a reopen.
func TestAppendManyFrames(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	var recs []logdapi.Record
	var want bytes.Buffer
	off := int64(0)
	for i := range maxIOV + 100 {
		n := 3 + i%7
		if i%250 == 0 {
			n = maxData + 1000 // split into two frames
		}
		data := bytes.Repeat([]byte{byte('a' + i%26)}, n)
		st := out
		if i%2 == 1 {
			st = errS
		}
		recs = append(recs, logdapi.Record{Stream: st, Offset: off, Data: data})
		want.Write(data)
		off += int64(n)
	}
	if n := mustAppend(t, s, "7", true, recs...); n != off {
		t.Fatalf("size %d, want %d", n, off)
	}
	check := func(s *Store) {
		t.Helper()
		var got bytes.Buffer
		for _, r := range readAll(t, s, "7", 0) {
			got.Write(r.Data)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("read back %d bytes, want %d, or they differ", got.Len(), want.Len())
		}
	}
	check(s)
	s.Close()
	check(open(t, dir, 0))
}

// Frames around the reader's small buffer (readBuffer): data copied from
// it, read straight from the file, or both, from any offset.
func TestReadFramesAroundBuffer(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	var (
		recs []logdapi.Record
		off  int64
	)
	for i, n := range []int{1, 3, readBuffer - 10, readBuffer, readBuffer + 1, 20000, maxData, maxData + 1, 5, 2 * readBuffer} {
		d := bytes.Repeat([]byte{byte('a' + i)}, n)
		st := out
		if i%3 == 2 {
			st = errS
		}
		recs = append(recs, logdapi.Record{Stream: st, Offset: off, Data: d})
		off += int64(n)
	}
	mustAppend(t, s, "12", true, recs...)
	wb, ws := bytesOf(recs), streamOf(recs)
	for from := int64(0); from <= off; from += 1 + from/3 {
		got := readAll(t, s, "12", from)
		flat(t, got, from)
		if !bytes.Equal(bytesOf(got), wb[from:]) || !bytes.Equal(streamOf(got), ws[from:]) {
			t.Fatalf("from %d: wrong bytes", from)
		}
	}
}

// TestReaderBufferFitsWhatItReads: a short stretch of log is read through a
// buffer its size, not readBuffer, and the buffer grows, up to readBuffer,
// when a later stretch is longer.
func TestReaderBufferFitsWhatItReads(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 3*readBuffer)); err != nil {
		t.Fatal(err)
	}
	r := newReader(f, mark{}, 0)
	for _, tc := range []struct {
		end  int64
		size int
	}{{5, 16}, {100, 100}, {50, 100}, {readBuffer / 2, readBuffer / 2}, {3 * readBuffer, readBuffer}, {10, readBuffer}} {
		r.pos = 0
		r.point(tc.end)
		if got := r.br.Size(); got != tc.size {
			t.Errorf("after reading up to %d: buffer of %d, want %d", tc.end, got, tc.size)
		}
		if b, err := r.br.Peek(int(min(tc.end, int64(r.br.Size())))); err != nil || len(b) == 0 {
			t.Errorf("reading up to %d: %d bytes, %v", tc.end, len(b), err)
		}
	}
}

// TestWrittenCountsStoredOutput: Written grows by the output a log keeps,
// not by what a writer resends, across logs.
func TestWrittenCountsStoredOutput(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	mustAppend(t, s, "1", false, rec(out, 0, "hello"), rec(errS, 5, "!"))
	mustAppend(t, s, "2", false, rec(out, 0, "abc"))
	if w := s.Written(); w != 9 {
		t.Fatalf("Written() = %d, want 9", w)
	}
	mustAppend(t, s, "1", true, rec(out, 0, "hello"), rec(errS, 5, "!"), rec(out, 6, "more")) // a resend, then 4 new bytes
	if w := s.Written(); w != 13 {
		t.Fatalf("Written() = %d after a resend and 4 new bytes, want 13", w)
	}
}
