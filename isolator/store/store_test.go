package store

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

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
			Init: Proc{PID: 42, StartTicks: 7, BootID: "b"}},
		{Job: &jobletv1.Job{Id: "10", Command: "false", State: jobletv1.JobState_JOB_STATE_FAILED, ExitCode: 1, Reason: "exited with code 1"}},
	}
	for _, r := range want {
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	// A leftover temporary file and foreign names are not records.
	for _, name := range []string{".3.json.tmp123", "x.json", "007.json"} {
		if err := os.WriteFile(filepath.Join(dir, "jobs", name), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("loaded %d records, want %d", len(got), len(want))
	}
	for i := range want { // numeric order: 2 before 10
		if !proto.Equal(got[i].Job, want[i].Job) || got[i].Init != want[i].Init {
			t.Errorf("record %d: got %v %+v, want %v %+v", i, got[i].Job, got[i].Init, want[i].Job, want[i].Init)
		}
	}
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

func TestSaveRefusesBadID(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../x", "1/2", "a"} {
		if err := s.Save(Record{Job: &jobletv1.Job{Id: id}}); err == nil {
			t.Errorf("id %q saved", id)
		}
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

// TestUpdate: Update replaces a record like Save, leaving no temporary
// file, and Load reads it back.
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
	ents, err := os.ReadDir(filepath.Join(dir, "jobs"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("jobs dir: %v, %v; want the one record", ents, err)
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
