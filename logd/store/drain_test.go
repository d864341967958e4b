package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/logdapi"
)

// pipes returns two pipes, as a shim makes them, with their write ends.
func pipes(t *testing.T) (ps []logdapi.Pipe, wOut, wErr *os.File) {
	t.Helper()
	rOut, wOut, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	rErr, wErr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rOut.Close(); wOut.Close(); rErr.Close(); wErr.Close() })
	return []logdapi.Pipe{{Stream: out, File: rOut}, {Stream: errS, File: rErr}}, wOut, wErr
}

// byStream splits a log into what each stream carried, checking offsets.
func byStream(t *testing.T, recs []logdapi.Record) (o, e []byte) {
	t.Helper()
	var off int64
	for _, r := range recs {
		if r.Offset != off {
			t.Fatalf("record at %d, want %d", r.Offset, off)
		}
		off += int64(len(r.Data))
		if r.Stream == out {
			o = append(o, r.Data...)
		} else {
			e = append(e, r.Data...)
		}
	}
	return o, e
}

func random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

func TestDrain(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	ps, wOut, wErr := pipes(t)
	wantOut, wantErr := random(3<<20+17), random(200<<10+3)
	go func() {
		// Interleaved writes of odd sizes, more than a pipe holds.
		o, e := wantOut, wantErr
		for len(o) > 0 || len(e) > 0 {
			n := min(len(o), 1+rand.IntN(100<<10))
			wOut.Write(o[:n])
			o = o[n:]
			n = min(len(e), 1+rand.IntN(10<<10))
			wErr.Write(e[:n])
			e = e[n:]
		}
		wOut.Close()
		wErr.Close()
	}()
	size, err := s.Drain(context.Background(), "1", ps)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(wantOut) + len(wantErr)); size != want {
		t.Fatalf("size %d, want %d", size, want)
	}
	if st, _ := s.Stat(context.Background(), "1"); !st.Closed || st.Size != size {
		t.Fatalf("stat %+v", st)
	}
	o, e := byStream(t, readAll(t, s, "1", 0))
	if !bytes.Equal(o, wantOut) || !bytes.Equal(e, wantErr) {
		t.Fatalf("read back %d+%d bytes, not the %d+%d written", len(o), len(e), len(wantOut), len(wantErr))
	}
	if w := s.Written(); w != size {
		t.Errorf("Written() = %d after draining %d bytes", w, size)
	}
}

// A drain stopped midway (its caller gone, or logd stopped) leaves what it
// did not store in the pipes; the next drain, by a new store on the same
// files, goes on from there.
func TestDrainResumes(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	ps, wOut, wErr := pipes(t)
	first := random(300 << 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.Drain(ctx, "2", ps); done <- err }()
	if _, err := wOut.Write(first); err != nil {
		t.Fatal(err)
	}
	// Wait for the store to have taken some of it, then stop the drain.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if st, _ := s.Stat(context.Background(), "2"); st.Size > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing drained")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("drain after cancel: %v", err)
	}
	s.Close()

	second, tail := random(100<<10), []byte("stderr at the end")
	go func() {
		wOut.Write(second)
		wErr.Write(tail)
		wOut.Close()
		wErr.Close()
	}()
	s = open(t, dir, 0)
	size, err := s.Drain(context.Background(), "2", ps)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(first) + len(second) + len(tail)); size != want {
		t.Fatalf("size %d, want %d", size, want)
	}
	o, e := byStream(t, readAll(t, s, "2", 0))
	if !bytes.Equal(o, append(bytes.Clone(first), second...)) || !bytes.Equal(e, tail) {
		t.Fatalf("read back %d+%d bytes, not the %d+%d written", len(o), len(e), len(first)+len(second), len(tail))
	}
}

// Past the cap a drain counts what it drops, as Append does.
func TestDrainCap(t *testing.T) {
	s := open(t, t.TempDir(), 100<<10)
	ps, wOut, wErr := pipes(t)
	data := random(1 << 20)
	go func() {
		wOut.Write(data)
		wOut.Close()
		wErr.Close()
	}()
	size, err := s.Drain(context.Background(), "3", ps)
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(data)) {
		t.Fatalf("accepted %d, want %d", size, len(data))
	}
	o, e := byStream(t, readAll(t, s, "3", 0))
	if !bytes.Equal(o, data[:100<<10]) || !bytes.Contains(e, []byte("output truncated at 102400 bytes")) {
		t.Fatalf("kept %d bytes of stdout and stderr %q", len(o), e)
	}
}

// A second drain of a log waits for the first to let go of the pipes.
func TestDrainOneAtATime(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	ps, wOut, wErr := pipes(t)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := s.Drain(ctx, "4", ps); first <- err }()
	for !draining(s, "4") {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { _, err := s.Drain(context.Background(), "4", ps); second <- err }()
	select {
	case err := <-second:
		t.Fatalf("second drain ran alongside the first: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	<-first
	wOut.Write([]byte("x"))
	wOut.Close()
	wErr.Close()
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if o, _ := byStream(t, readAll(t, s, "4", 0)); string(o) != "x" {
		t.Fatalf("log %q", o)
	}
}

// logd killed between a frame's header and the end of its data leaves the
// frame cut short; what of its data is there is kept.
func TestTornFrameKept(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	mustAppend(t, s, "5", false, rec(out, 0, "whole"))
	s.Close()
	path := filepath.Join(dir, "5.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(appendFrame(nil, kindStderr, []byte("kept, and lost"))[:hdrLen+len("kept")])
	f.Close()
	s = open(t, dir, 0)
	if st, _ := s.Stat(context.Background(), "5"); st.Size != 9 {
		t.Fatalf("stat %+v, want 9 bytes", st)
	}
	mustAppend(t, s, "5", true, rec(out, 9, "!"))
	if got, want := flat(t, readAll(t, s, "5", 0), 0), "o:whole|e:kept|o:!|"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func draining(s *Store, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs[id] != nil && len(s.logs[id].drain) > 0
}

// dataFrames counts the output frames in a log file.
func dataFrames(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var (
		hdr [hdrLen]byte
		n   int
	)
	for {
		k, size, err := readHeader(br, &hdr)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := k.stream(); ok {
			n++
		}
		if _, err := br.Discard(size); err != nil {
			t.Fatal(err)
		}
	}
}

// Output written in many small pieces, as `head` or `cat` write it, is
// gathered into few large frames: after a turn that found little, the drain
// waits for the pipe to fill a little before it looks again, instead of
// waking for every write. The output stays byte-exact.
func TestDrainGathersSmallWrites(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	ps, wOut, wErr := pipes(t)
	wErr.Close()
	const pieces, pieceLen = 256, 4 << 10
	want := random(pieces * pieceLen)
	go func() {
		for p := range pieces { // one write per piece, back to back
			wOut.Write(want[p*pieceLen : (p+1)*pieceLen])
		}
		wOut.Close()
	}()
	if _, err := s.Drain(context.Background(), "1", ps); err != nil {
		t.Fatal(err)
	}
	o, e := byStream(t, readAll(t, s, "1", 0))
	if !bytes.Equal(o, want) || len(e) != 0 {
		t.Fatalf("read back %d+%d bytes, not the %d written", len(o), len(e), len(want))
	}
	// 1 MiB is 16 full frames; a turn per write would make up to 256.
	if n := dataFrames(t, filepath.Join(dir, "1.log")); n > 64 {
		t.Errorf("%d writes of %d bytes stored as %d frames, want few (≥ 16 KiB each)", pieces, pieceLen, n)
	}
}

// BenchmarkDrainSmallWrites drains a pipe that a writer fills 8 KiB at a
// time, as `head -c 1G /dev/zero` does, into a log: MB/s, and the CPU time
// of the whole process (writer and drain) per GiB, the figure that bounds
// a job's output on a machine with few CPUs.
func BenchmarkDrainSmallWrites(b *testing.B) {
	const total, piece = 256 << 20, 8 << 10
	buf := make([]byte, piece)
	s := open(b, b.TempDir(), 0)
	b.SetBytes(total)
	var ru0, ru1 unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	for i := range b.N {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := unix.FcntlInt(r.Fd(), unix.F_SETPIPE_SZ, 1<<20); err != nil {
			b.Fatal(err)
		}
		go func() {
			for range total / piece {
				w.Write(buf)
			}
			w.Close()
		}()
		if _, err := s.Drain(context.Background(), strconv.Itoa(i), []logdapi.Pipe{{Stream: out, File: r}}); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(cpu.Seconds()/(float64(b.N)*total/(1<<30)), "cpu-s/GiB")
}
