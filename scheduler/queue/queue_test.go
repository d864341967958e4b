package queue

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 7, 20, 12, 0, 0, 0, time.UTC)

func load(t *testing.T, dir string) *Queue {
	t.Helper()
	q, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return q
}

func add(t *testing.T, q *Queue, id string, due time.Time) Entry {
	t.Helper()
	e, added, err := q.Add(id, due, "in "+id)
	if err != nil || !added {
		t.Fatalf("Add(%s): added %v, %v", id, added, err)
	}
	return e
}

func ids(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.JobID)
	}
	return out
}

func TestOrderAndRoundTrip(t *testing.T) {
	dir := t.TempDir()
	q := load(t, dir)
	add(t, q, "late", t0.Add(time.Hour))
	add(t, q, "b", t0)
	add(t, q, "early", t0.Add(-time.Hour))
	add(t, q, "a", t0) // same instant as b, submitted after it
	add(t, q, "c", t0.In(time.FixedZone("x", -7*3600)))

	want := []string{"early", "b", "a", "c", "late"}
	if got := ids(q.Entries()); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if n, _ := q.Next(); n.JobID != "early" {
		t.Fatalf("Next = %s", n.JobID)
	}

	r := load(t, dir)
	if got := ids(r.Entries()); !slices.Equal(got, want) {
		t.Fatalf("reloaded order %v, want %v", got, want)
	}
	for i, e := range r.Entries() {
		o := q.Entries()[i]
		if e.JobID != o.JobID || !e.Due.Equal(o.Due) || e.Seq != o.Seq || e.Input != o.Input {
			t.Errorf("reloaded %+v, want %+v", e, o)
		}
	}
	// Submission order goes on after a reload: a new entry at t0 comes
	// after every older one at t0.
	d := add(t, r, "d", t0)
	if d.Seq <= q.Entries()[len(want)-1].Seq {
		t.Errorf("seq %d reused after reload", d.Seq)
	}
	if got := ids(r.Entries()); !slices.Equal(got, []string{"early", "b", "a", "c", "d", "late"}) {
		t.Errorf("order after reload and add %v", got)
	}
}

func TestAddIdempotent(t *testing.T) {
	q := load(t, t.TempDir())
	first := add(t, q, "j", t0)
	again, added, err := q.Add("j", t0.Add(time.Hour), "other")
	if err != nil || added || again != first {
		t.Fatalf("second Add: %+v added=%v err=%v, want %+v unchanged", again, added, err, first)
	}
	if q.Len() != 1 {
		t.Fatalf("len %d", q.Len())
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	q := load(t, dir)
	add(t, q, "a", t0)
	add(t, q, "b", t0)
	add(t, q, "c", t0)
	if n, err := q.Remove("a"); n != 1 || err != nil {
		t.Fatalf("Remove(a) = %v, %v", n, err)
	}
	if n, err := q.Remove("a"); n != 0 || err != nil {
		t.Fatalf("second Remove(a) = %v, %v, want 0, nil", n, err)
	}
	if _, ok := q.Get("a"); ok {
		t.Fatal("a still queued")
	}
	if n, err := q.Remove("c", "x", "a"); n != 1 || err != nil {
		t.Fatalf("Remove(c, x, a) = %v, %v, want 1", n, err)
	}
	if got := ids(load(t, dir).Entries()); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("reloaded %v, want [b]", got)
	}
}

// TestTornTempIgnored is a crash in the middle of a write: a half-written
// temporary file next to the queue. The queue loads as it was and the
// leftover is removed.
func TestTornTempIgnored(t *testing.T) {
	dir := t.TempDir()
	q := load(t, dir)
	add(t, q, "a", t0)
	torn := filepath.Join(dir, "."+FileName+".tmp123")
	if err := os.WriteFile(torn, []byte(`{"version":1,"entries":[{"job_id":"x"`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := load(t, dir)
	if got := ids(r.Entries()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after torn write: %v, want [a]", got)
	}
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Fatalf("torn temp file left behind: %v", err)
	}
}

// TestFailedWriteKeepsState: when the new file cannot be written, the queue
// in memory and on disk stays as it was.
func TestFailedWriteKeepsState(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "q")
	q := load(t, dir)
	add(t, q, "a", t0)
	moved := filepath.Join(parent, "moved")
	if err := os.Rename(dir, moved); err != nil { // every write now fails
		t.Fatal(err)
	}
	if _, _, err := q.Add("b", t0, "x"); err == nil {
		t.Fatal("Add succeeded without a directory")
	}
	if n, err := q.Remove("a"); err == nil || n != 0 {
		t.Fatalf("Remove without a directory = %v, %v", n, err)
	}
	if got := ids(q.Entries()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("in memory after failed writes: %v, want [a]", got)
	}
	if got := ids(load(t, moved).Entries()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("on disk after failed writes: %v, want [a]", got)
	}
}

func TestDamagedFileRefused(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":    `{"version":1,"entries":[`,
		"version":      `{"version":9,"entries":[]}`,
		"repeated id":  `{"version":1,"entries":[{"job_id":"a","seq":1},{"job_id":"a","seq":2}]}`,
		"empty job id": `{"version":1,"entries":[{"job_id":"","seq":1}]}`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err == nil {
			t.Errorf("%s: loaded a damaged queue", name)
		}
	}
}

func TestFileMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	q := load(t, dir)
	add(t, q, "a", t0)
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, FileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}
