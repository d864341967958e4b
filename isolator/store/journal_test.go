package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/testkit/smalldisk"
)

func rec(id int, state jobletv1.JobState) Record {
	return Record{Job: &jobletv1.Job{Id: strconv.Itoa(id), Command: "sleep", Args: []string{"1"}, State: state}}
}

const (
	running   = jobletv1.JobState_JOB_STATE_RUNNING
	completed = jobletv1.JobState_JOB_STATE_COMPLETED
)

// states returns each record's id and state, in order, as "1:RUNNING".
func states(t *testing.T, recs []Record, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i, r := range recs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%s", r.Job.GetId(), strings.TrimPrefix(r.Job.GetState().String(), "JOB_STATE_"))
	}
	return b.String()
}

// openLogged opens the store in dir with its log in the returned buffer.
func openLogged(t *testing.T, dir string) (*Store, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	s, err := OpenLogging(dir, zerolog.New(&buf))
	if err != nil {
		t.Fatal(err)
	}
	return s, &buf
}

func journalSize(t *testing.T, dir string) int64 {
	t.Helper()
	st, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// Concurrent Saves share an fdatasync: while the writer is held in the sync
// of the first one, the others queue up, and they are all written by one
// write and synced by one more fdatasync.
func TestGroupCommit(t *testing.T) {
	const n = 32
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	inSync, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.beforeSync = func() error { once.Do(func() { close(inSync); <-release }); return nil }
	synced := s.syncs.Load() // Open's compaction
	var wg sync.WaitGroup
	errs := make(chan error, n)
	save := func(id int) {
		defer wg.Done()
		errs <- s.Save(rec(id, running))
	}
	wg.Add(n)
	go save(1)
	<-inSync
	for id := 2; id <= n; id++ {
		go save(id)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.jmu.Lock()
		queued := 0
		if s.next != nil {
			queued = s.next.n
		}
		s.jmu.Unlock()
		if queued == n-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Saves queued behind the first", queued, n-1)
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := s.syncs.Load() - synced; got != 2 {
		t.Errorf("%d Saves took %d fdatasyncs, want 2 (the first, then one for the other %d)", n, got, n-1)
	}
	recs, err := Read(dir)
	if len(recs) != n || err != nil {
		t.Fatalf("%d records on disk (%v), want %d", len(recs), err, n)
	}
	// Updates alone never wait for the disk.
	synced = s.syncs.Load()
	for id := 1; id <= n; id++ {
		if err := s.Update(rec(id, completed)); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.syncs.Load() - synced; got != 0 {
		t.Errorf("Updates took %d fdatasyncs", got)
	}
}

// A journal cut anywhere in its last entry, as by a power loss in the
// middle of the append, opens with every earlier record; the torn part is
// dropped (a warning, no copy kept) and later appends are read back.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	s, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Record{rec(1, running), rec(2, running), rec(1, completed)} {
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	before := journalSize(t, src)
	if err := s.Save(rec(3, running)); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(filepath.Join(src, journalName))
	if err != nil {
		t.Fatal(err)
	}
	for cut := before; cut < int64(len(whole)); cut++ {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, journalName), whole[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		s, log := openLogged(t, dir)
		got, err := s.Load()
		if st := states(t, got, err); st != "1:COMPLETED 2:RUNNING" {
			t.Fatalf("cut at %d of %d: got %s", cut, len(whole), st)
		}
		if cut > before && !strings.Contains(log.String(), "torn") {
			t.Errorf("cut at %d: nothing logged: %s", cut, log)
		}
		if strings.Contains(log.String(), "damaged") {
			t.Errorf("cut at %d: a torn tail logged as damage: %s", cut, log)
		}
		if err := s.Save(rec(4, running)); err != nil {
			t.Fatal(err)
		}
		got, err = Read(dir)
		if st := states(t, got, err); st != "1:COMPLETED 2:RUNNING 4:RUNNING" {
			t.Fatalf("cut at %d, then a save: got %s", cut, st)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*corrupt*")); len(m) != 0 {
			t.Errorf("cut at %d: a copy kept for a torn tail: %v", cut, m)
		}
	}
	// Zeros after the last entry (blocks allocated but never written) are
	// a torn tail too.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, journalName), append(whole[:before:before], make([]byte, 3000)...), 0o600); err != nil {
		t.Fatal(err)
	}
	s, log := openLogged(t, dir)
	got, err := s.Load()
	if st := states(t, got, err); st != "1:COMPLETED 2:RUNNING" || !strings.Contains(log.String(), "torn") {
		t.Fatalf("zeros after the journal: %s, logged %s", st, log)
	}
}

// A bad checksum in the middle of the journal keeps what is before it,
// logs an error and keeps the journal as it was aside; in the last entry
// it is a torn tail.
func TestCorruptEntry(t *testing.T) {
	src := t.TempDir()
	s, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	for id := 1; id <= 3; id++ {
		if err := s.Save(rec(id, running)); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, journalSize(t, src))
	}
	whole, err := os.ReadFile(filepath.Join(src, journalName))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at      int64 // the byte flipped
		want    string
		damaged bool
	}{
		{ends[0] + headerLen + 5, "1:RUNNING", true},            // entry 2's payload
		{ends[0] + 5, "1:RUNNING", true},                        // entry 2's checksum
		{ends[0] + 9, "1:RUNNING", true},                        // entry 2's id
		{ends[1] + headerLen + 5, "1:RUNNING 2:RUNNING", false}, // the last entry
	} {
		dir := t.TempDir()
		b := bytes.Clone(whole)
		b[c.at] ^= 0x40
		if err := os.WriteFile(filepath.Join(dir, journalName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, log := openLogged(t, dir)
		got, err := s.Load()
		if st := states(t, got, err); st != c.want {
			t.Errorf("byte %d flipped: got %s, want %s", c.at, st, c.want)
		}
		copies, _ := filepath.Glob(filepath.Join(dir, journalName+".corrupt-*"))
		switch {
		case c.damaged && (!strings.Contains(log.String(), `"level":"error"`) || len(copies) != 1):
			t.Errorf("byte %d flipped: logged %s, copies %v; want an error and a copy", c.at, log, copies)
		case c.damaged:
			if kept, _ := os.ReadFile(copies[0]); !bytes.Equal(kept, b) {
				t.Errorf("byte %d flipped: the copy is not the journal as it was", c.at)
			}
		case !strings.Contains(log.String(), "torn") || len(copies) != 0:
			t.Errorf("byte %d flipped: logged %s, copies %v; want a torn tail", c.at, log, copies)
		}
	}
	// What is not a journal at all is an error, not an empty store.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, journalName), []byte("something else entirely"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("a file that is not a journal opened")
	}
}

// Compaction keeps exactly the latest entry of each id, both at Open and
// once the journal has grown past twice its size plus compactSlack while
// running; a new journal left under its temporary name by a crash before
// the rename is ignored.
func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const ids = 5
	big := strings.Repeat("x", 1000)
	var last [ids + 1]int
	n := 0
	for journalSize(t, dir) < compactSlack/2 {
		id := n%ids + 1
		r := rec(id, running)
		r.Job.Args = []string{big, strconv.Itoa(n)}
		if err := s.Update(r); err != nil {
			t.Fatal(err)
		}
		last[id] = n
		n++
	}
	count := func() (entries, distinct int) {
		t.Helper()
		f, err := os.Open(filepath.Join(dir, journalName))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		seen := map[uint64]bool{}
		end, bad, err := scan(f, st.Size(), func(id uint64, _ span) { entries++; seen[id] = true })
		if err != nil || bad != nil || end != st.Size() {
			t.Fatalf("scan: %v %v, %d of %d", err, bad, end, st.Size())
		}
		return entries, len(seen)
	}
	checkLatest := func(what string) {
		t.Helper()
		recs, err := Read(dir)
		if err != nil || len(recs) != ids {
			t.Fatalf("%s: %d records (%v)", what, len(recs), err)
		}
		for _, r := range recs {
			id, _ := strconv.Atoi(r.Job.GetId())
			if got := r.Job.GetArgs()[1]; got != strconv.Itoa(last[id]) {
				t.Errorf("%s: job %d holds entry %s, want %d", what, id, got, last[id])
			}
		}
	}
	if e, _ := count(); e != n {
		t.Fatalf("%d entries before compaction, want %d", e, n)
	}
	// A compaction cut short before its rename.
	if err := os.WriteFile(filepath.Join(dir, tempName), []byte(magic+"garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	if e, d := count(); e != ids || d != ids {
		t.Fatalf("after Open: %d entries for %d ids, want %d", e, d, ids)
	}
	checkLatest("after Open")
	if _, err := os.Stat(filepath.Join(dir, tempName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover temporary journal: %v", err)
	}

	// While running: the journal shrinks back on its own.
	compacted := journalSize(t, dir)
	threshold := 2*compacted + compactSlack
	peak := compacted
	for i := 0; peak <= threshold; i++ {
		id := n%ids + 1
		r := rec(id, running)
		r.Job.Args = []string{big, strconv.Itoa(n)}
		if err := s.Save(r); err != nil { // Save: the compaction must not hold it up for good
			t.Fatal(err)
		}
		last[id] = n
		n++
		size := journalSize(t, dir)
		if size < peak {
			break
		}
		peak = size
		if i > 5000 {
			t.Fatal("no compaction")
		}
	}
	s.flush()
	if e, d := count(); e != ids || d != ids {
		t.Fatalf("after compacting while running: %d entries for %d ids, want %d", e, d, ids)
	}
	checkLatest("after compacting while running")
	if err := s.Save(rec(ids+1, completed)); err != nil {
		t.Fatal(err)
	}
	if recs, err := Read(dir); err != nil || len(recs) != ids+1 {
		t.Fatalf("append after a compaction: %d records (%v)", len(recs), err)
	}
}

// writeLegacy writes a record in the layout of the previous store.
func writeLegacy(t *testing.T, dir string, r Record) {
	t.Helper()
	j, err := protojson.Marshal(r.Job)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(file{Job: j, Init: r.Init, Shim: r.Shim})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jobs", r.Job.GetId()+".json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A state directory of the previous layout is taken into the journal at
// Open, its files removed only once the journal holding them is in place;
// the counter goes on from last-id.
func TestMigration(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := rec(2, running)
	old.Init = Proc{PID: 7, StartTicks: 8, BootID: "b"}
	old.Shim = Proc{PID: 6, StartTicks: 5, BootID: "b"}
	writeLegacy(t, dir, old)
	writeLegacy(t, dir, rec(10, completed))
	for _, name := range []string{".3.json.tmp123", "x.json", "007.json"} { // not records, as before
		if err := os.WriteFile(filepath.Join(dir, "jobs", name), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "last-id"), []byte("64\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The journal cannot be written: nothing of the old layout goes.
	if err := os.MkdirAll(filepath.Join(dir, tempName, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("opened without writing the journal")
	}
	if _, err := os.Stat(filepath.Join(dir, "jobs", "10.json")); err != nil {
		t.Fatalf("an old record went before the journal held it: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, tempName)); err != nil {
		t.Fatal(err)
	}

	s, log := openLogged(t, dir)
	got, err := s.Load()
	if st := states(t, got, err); st != "2:RUNNING 10:COMPLETED" {
		t.Fatalf("migrated %s", st)
	}
	if got[0].Init != old.Init || got[0].Shim != old.Shim {
		t.Errorf("migrated identities %+v %+v, want %+v %+v", got[0].Init, got[0].Shim, old.Init, old.Shim)
	}
	if _, err := os.Stat(filepath.Join(dir, "jobs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old records' directory is left: %v", err)
	}
	if !strings.Contains(log.String(), "moved into the journal") {
		t.Errorf("migration not logged: %s", log)
	}
	if id, err := s.NextID(); err != nil || id != "65" {
		t.Errorf("first id after migration %s (%v), want 65", id, err)
	}

	// Old records left by a migration cut short after the journal was in
	// place are the same as or older than the journal's: the journal wins.
	if err := s.Save(rec(10, jobletv1.JobState_JOB_STATE_FAILED)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeLegacy(t, dir, rec(10, completed))
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	got, err = s.Load()
	if st := states(t, got, err); st != "2:RUNNING 10:FAILED" {
		t.Fatalf("after a second migration %s", st)
	}
	// An old record that cannot be read is an error, as it was before.
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jobs", "11.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("opened with an undecodable old record")
	}
}

// The largest id in the journal raises the counter: with last-id lost, no
// id recorded is handed out again.
func TestIDsAboveJournal(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(rec(500, completed)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "last-id")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	if id, err := s.NextID(); err != nil || id != "501" {
		t.Fatalf("got %s (%v), want 501", id, err)
	}
}

// On a full state disk a Save fails with ENOSPC, refused before writing
// (minFree) and, without that margin, by the kernel in the middle of the
// entry; either way the journal is left as it was, the records saved
// before are read back, and Saves work again once there is space.
func TestDiskFull(t *testing.T) {
	dir, ok := smalldisk.Dir(t, "256k")
	if !ok {
		return
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(rec(1, completed)); err != nil {
		t.Fatal(err)
	}
	size := journalSize(t, dir)
	filler := smalldisk.Fill(t, dir)

	big := rec(2, running)
	big.Job.Args = []string{strings.Repeat("y", 3*4096)} // past the journal's last page
	for _, margin := range []int64{defaultMinFree, 0} {
		s.minFree = margin
		for _, save := range []func(Record) error{s.Save, s.Update} {
			err := save(big)
			if !errors.Is(err, unix.ENOSPC) || !errors.Is(err, errdefs.ErrResourceExhausted) {
				t.Fatalf("margin %d: save on a full disk: %v", margin, err)
			}
			if got := journalSize(t, dir); got != size {
				t.Fatalf("margin %d: the journal is %d bytes after a failed save, want %d", margin, got, size)
			}
			got, err := Read(dir)
			if st := states(t, got, err); st != "1:COMPLETED" {
				t.Fatalf("margin %d: on a full disk: %s", margin, st)
			}
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.minFree = defaultMinFree
	if err := s.Save(big); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if st := states(t, got, err); st != "1:COMPLETED 2:RUNNING" {
		t.Fatalf("after the disk has room again: %s", st)
	}
}

// Many goroutines saving and updating at once (run with -race): every
// record ends as its last write.
func TestConcurrentSaves(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				id := g*20 + i + 1
				if err := s.Save(rec(id, running)); err != nil {
					t.Error(err)
				}
				if err := s.Update(rec(id, running)); err != nil {
					t.Error(err)
				}
				if err := s.Save(rec(id, completed)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	recs, err := s.Load()
	if err != nil || len(recs) != 320 {
		t.Fatalf("%d records (%v)", len(recs), err)
	}
	for _, r := range recs {
		if r.Job.GetState() != completed {
			t.Fatalf("job %s: %v", r.Job.GetId(), r.Job.GetState())
		}
	}
}
