package store

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// inMemory reports whether the store holds id's log.
func inMemory(s *Store, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs[id] != nil
}

// A closed log nobody uses leaves memory; read back it is byte for byte what
// was written, from any offset, and Stat is unchanged. A log in use, or
// still open, stays.
func TestClosedLogLeavesMemory(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	want := writeRandom(t, s, "1", 3<<20, 9) // frames large and small, several index marks
	if !inMemory(s, "1") {
		t.Fatal("an open log left memory")
	}
	mustAppend(t, s, "1", true)
	if inMemory(s, "1") {
		t.Fatal("a closed log nobody uses is still in memory")
	}
	size := int64(len(bytesOf(want)))
	if st, err := s.Stat(context.Background(), "1"); err != nil || st != (logdapi.Stat{Size: size, Closed: true, Exists: true}) {
		t.Fatalf("stat after eviction %+v %v", st, err)
	}
	wb, ws := bytesOf(want), streamOf(want)
	for _, from := range []int64{0, 1, 1<<20 + 3, size - 1, size} {
		got := readAll(t, s, "1", from)
		flat(t, got, from)
		if !bytes.Equal(bytesOf(got), wb[from:]) || !bytes.Equal(streamOf(got), ws[from:]) {
			t.Fatalf("from %d: evicted log reads back different bytes", from)
		}
		if inMemory(s, "1") {
			t.Fatal("the log stayed in memory after its reader was done")
		}
	}

	// A follower keeps it in memory while it reads, then it goes.
	release := make(chan struct{})
	blocked := blockedFollower(t, s, "1", release)
	if !inMemory(s, "1") {
		t.Fatal("a log being read left memory")
	}
	close(release)
	if got := <-blocked; got.err != nil || !bytes.Equal(bytesOf(got.recs), wb) {
		t.Fatalf("follower of an evicted log: %v, or different bytes", got.err)
	}
	if inMemory(s, "1") {
		t.Fatal("the log stayed in memory after its follower was done")
	}
}

// Following an evicted closed log ends, with all of it.
func TestFollowEvictedEnds(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	mustAppend(t, s, "2", true, rec(out, 0, "all "), rec(errS, 4, "there"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := follow(ctx, s, "2")
	if err != nil {
		t.Fatalf("follow of an evicted closed log: %v", err)
	}
	if got, want := flat(t, recs, 0), "o:all |e:there|"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// A writer coming back to an evicted log (a shim resending after a restart,
// or its eof again) is answered from the file: what the log has is taken as
// before, new bytes for the closed log are refused, and nothing changes.
func TestWriteEvictedLog(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	mustAppend(t, s, "3", false, rec(out, 0, "hello "))
	mustAppend(t, s, "3", true, rec(errS, 6, "world"))
	if inMemory(s, "3") {
		t.Fatal("closed log still in memory")
	}
	if n := mustAppend(t, s, "3", false, rec(out, 0, "hello "), rec(errS, 6, "world")); n != 11 {
		t.Fatalf("resend to an evicted log: size %d, want 11", n)
	}
	if n := mustAppend(t, s, "3", true); n != 11 {
		t.Fatalf("eof again: size %d, want 11", n)
	}
	_, err := s.Append(context.Background(), "3", []logdapi.Record{rec(out, 11, "more")}, false)
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	if got, want := flat(t, readAll(t, s, "3", 0), 0), "o:hello |e:world|"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if inMemory(s, "3") {
		t.Fatal("closed log still in memory after the writer was answered")
	}
	// An open log nobody uses stays: its writer comes back.
	mustAppend(t, s, "4", false, rec(out, 0, "x"))
	if !inMemory(s, "4") {
		t.Fatal("an open log left memory")
	}
}
