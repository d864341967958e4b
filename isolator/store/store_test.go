package store

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Job: &jobletv1.Job{Id: "2", Command: "echo", Args: []string{"hi", ""}, State: jobletv1.JobState_JOB_STATE_RUNNING,
			StartTime: timestamppb.Now(), Limits: &jobletv1.Limits{MaxMemoryMb: 64}, Hostname: "job-2"},
			Init: Proc{PID: 42, StartTicks: 7, BootID: "b"}, Shim: Proc{PID: 41, StartTicks: 6, BootID: "b"}},
		{Job: &jobletv1.Job{Id: "10", Command: "false", State: jobletv1.JobState_JOB_STATE_FAILED, ExitCode: 1, Reason: "exited with code 1"}},
	}
	for _, r := range want {
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, got []Record, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
		}
		for i := range want { // numeric order: 2 before 10
			if !proto.Equal(got[i].Job, want[i].Job) || got[i].Init != want[i].Init || got[i].Shim != want[i].Shim {
				t.Errorf("%s: record %d: got %v %+v %+v, want %v %+v %+v", what, i, got[i].Job, got[i].Init, got[i].Shim, want[i].Job, want[i].Init, want[i].Shim)
			}
		}
	}
	got, err := s.Load()
	check("Load", got, err)
	got, err = Read(dir)
	check("Read while open", got, err)
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	got, err = s.Load()
	check("Load after reopening", got, err)
}

func TestSaveReplaces(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []jobletv1.JobState{jobletv1.JobState_JOB_STATE_RUNNING, jobletv1.JobState_JOB_STATE_COMPLETED} {
		if err := s.Save(Record{Job: &jobletv1.Job{Id: "1", State: st}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Job.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("got %v", got)
	}
}

// Save and Update append in call order, whichever waits for the disk: the
// later entry of an id wins, also once the journal is read back.
func TestLaterEntryWins(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		save bool
		rec  Record
	}{
		{true, Record{Job: &jobletv1.Job{Id: "1", State: jobletv1.JobState_JOB_STATE_RUNNING}}},
		{false, Record{Job: &jobletv1.Job{Id: "1", State: jobletv1.JobState_JOB_STATE_RUNNING}, Init: Proc{PID: 5}}},
		{true, Record{Job: &jobletv1.Job{Id: "2", State: jobletv1.JobState_JOB_STATE_SCHEDULED}}},
		{true, Record{Job: &jobletv1.Job{Id: "1", State: jobletv1.JobState_JOB_STATE_COMPLETED}}},
		{false, Record{Job: &jobletv1.Job{Id: "2", State: jobletv1.JobState_JOB_STATE_RUNNING}, Shim: Proc{PID: 9}}},
	}
	for _, st := range steps {
		save := s.Update
		if st.save {
			save = s.Save
		}
		if err := save(st.rec); err != nil {
			t.Fatal(err)
		}
	}
	for _, load := range []func() ([]Record, error){s.Load, func() ([]Record, error) { return Read(dir) }, func() ([]Record, error) {
		s, err := Open(dir)
		if err != nil {
			return nil, err
		}
		return s.Load()
	}} {
		got, err := load()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Job.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED || got[0].Init != (Proc{}) ||
			got[1].Job.GetState() != jobletv1.JobState_JOB_STATE_RUNNING || got[1].Shim.PID != 9 {
			t.Fatalf("got %v", got)
		}
	}
}

func TestSaveRefusesBadID(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../x", "1/2", "a", "007", "-1"} {
		if err := s.Save(Record{Job: &jobletv1.Job{Id: id}}); err == nil {
			t.Errorf("id %q saved", id)
		}
	}
	// Nor a record too large to be told from a corrupt length when read back.
	huge := strings.Repeat("x", maxPayload)
	if err := s.Save(Record{Job: &jobletv1.Job{Id: "1", Args: []string{huge}}}); err == nil {
		t.Error("a record larger than an entry may be saved")
	}
}

func TestIDsNeverReused(t *testing.T) {
	dir := t.TempDir()
	seen := map[string]bool{}
	next := func(s *Store) string {
		t.Helper()
		id, err := s.NextID()
		if err != nil {
			t.Fatal(err)
		}
		if seen[id] {
			t.Fatalf("id %s handed out twice", id)
		}
		seen[id] = true
		return id
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id := next(s); id != "1" {
		t.Fatalf("first id %s, want 1", id)
	}
	next(s)
	// Reopen after Close: the counter continues right after the last id.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	if id := next(s); id != "3" {
		t.Fatalf("after reopen got %s, want 3", id)
	}
	// Reopen without Close, as after a crash: the rest of the reserved
	// block is skipped, nothing handed out is reused.
	for range idBlock + 5 { // across a block boundary
		next(s)
	}
	last := next(s)
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	id := next(s)
	if n, _ := strconv.Atoi(id); n <= mustAtoi(t, last) || n > mustAtoi(t, last)+idBlock {
		t.Fatalf("after a crash at %s got %s, want within the next %d", last, id, idBlock)
	}
	// A lost counter file is rebuilt from the records.
	if err := s.Save(Record{Job: &jobletv1.Job{Id: id}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "last-id")); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	if got, want := next(s), strconv.Itoa(mustAtoi(t, id)+1); got != want {
		t.Fatalf("after losing the counter got %s, want %s", got, want)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUpdate: Update replaces a record like Save, leaving nothing but the
// journal, and Load reads it back.
func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(Record{Job: &jobletv1.Job{Id: "7", Command: "true"}}); err != nil {
		t.Fatal(err)
	}
	shim := Proc{PID: 42, StartTicks: 9, BootID: "b"}
	if err := s.Update(Record{Job: &jobletv1.Job{Id: "7", Command: "true"}, Shim: shim}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Load()
	if err != nil || len(recs) != 1 || recs[0].Shim != shim || recs[0].Job.GetCommand() != "true" {
		t.Fatalf("Load = %v, %v", recs, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != journalName {
		t.Fatalf("state dir: %v, %v; want the journal alone", ents, err)
	}
	if err := s.Update(Record{Job: &jobletv1.Job{Id: "x"}}); err == nil {
		t.Fatal("bad id accepted")
	}
}

func TestCorruptCounter(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "last-id"), []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("corrupt counter accepted")
	}
}

// TestSaveAsync: a SaveAsync's record is written (in the journal, readable
// by a new isolator) while its fdatasync is still under way, and Durable
// returns only once that sync is over.
func TestSaveAsync(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	inSync, release := make(chan struct{}), make(chan struct{})
	s.beforeSync = func() error { close(inSync); <-release; return nil }
	synced := s.syncs.Load()
	w := s.SaveAsync(rec(3, running))
	if err := w.Written(); err != nil {
		t.Fatal(err)
	}
	<-inSync
	recs, err := Read(dir)
	if err != nil || len(recs) != 1 || recs[0].Job.GetId() != "3" {
		t.Fatalf("journal while the record syncs: %v, %v; want job 3's record", recs, err)
	}
	durable := make(chan error, 1)
	go func() { durable <- w.Durable() }()
	select {
	case err := <-durable:
		t.Fatalf("Durable returned (%v) while the sync was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-durable; err != nil {
		t.Fatal(err)
	}
	if got := s.syncs.Load() - synced; got != 1 {
		t.Fatalf("%d fdatasyncs, want 1", got)
	}
	if w := s.SaveAsync(Record{Job: &jobletv1.Job{Id: "x"}}); w.Written() == nil || w.Durable() == nil {
		t.Fatal("bad id accepted")
	}
}

// TestSaveAsyncSyncFails: when the sync fails, Written has succeeded but
// Durable reports the error, and the record is cut off the journal again:
// a new isolator does not find it.
func TestSaveAsyncSyncFails(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(rec(1, running)); err != nil {
		t.Fatal(err)
	}
	s.beforeSync = func() error { return syscall.EIO }
	w := s.SaveAsync(rec(2, running))
	if err := w.Written(); err != nil {
		t.Fatalf("Written: %v", err)
	}
	if err := w.Durable(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Durable = %v, want EIO", err)
	}
	s.beforeSync = nil
	if err := s.Save(rec(3, running)); err != nil {
		t.Fatal(err)
	}
	recs, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.Job.GetId())
	}
	if strings.Join(ids, ",") != "1,3" {
		t.Fatalf("journal holds %v, want jobs 1 and 3", ids)
	}
}
