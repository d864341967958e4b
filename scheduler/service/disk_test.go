package service

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/testkit/smalldisk"
)

// With the scheduler's queue on a full disk: a new schedule and a cancel
// are refused with a clear ResourceExhausted error, the queue in memory and
// on disk stays as it was and is still listed; a job falling due meanwhile
// still starts (once: it stays queued until its removal can be saved, and
// the isolator takes the hand-off again as a success). Once there is
// space, everything is saved and a restart finds the queue right.
func TestQueueDiskFull(t *testing.T) {
	dir, ok := smalldisk.Dir(t, "256k")
	if !ok {
		return
	}
	qdir := filepath.Join(dir, "scheduler")
	f := newFake()
	s := run(t, qdir, f, nil)
	schedule(t, s, "kept", "1h")
	schedule(t, s, "due", "2s")
	saved, err := os.ReadFile(filepath.Join(qdir, "queue.json"))
	if err != nil {
		t.Fatal(err)
	}

	filler := smalldisk.Fill(t, dir)
	full := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, errdefs.ErrResourceExhausted) ||
			err.Error() != "no space left on the server's state disk (the schedule queue); free some space and try again" {
			t.Errorf("%s on a full disk: %v, want a clear ResourceExhausted", what, err)
		}
	}
	_, err = s.Schedule(bg, "new", "1h")
	full("schedule", err)
	_, err = s.Cancel(bg, "kept")
	full("cancel", err)
	if got := queuedIDs(t, s); !slices.Equal(got, []string{"due", "kept"}) {
		t.Errorf("queue on a full disk: %v", got)
	}
	waitFor(t, 5*time.Second, "the due job to start", func() bool { _, ok := f.startedAt("due"); return ok })
	time.Sleep(300 * time.Millisecond) // a retry or two of the removal
	if _, started := f.snapshot(); !slices.Equal(started, []string{"due"}) {
		t.Errorf("started %v, want [due] once", started)
	}
	if got, _ := os.ReadFile(filepath.Join(qdir, "queue.json")); string(got) != string(saved) {
		t.Errorf("queue file changed on a full disk:\n%s\nwant:\n%s", got, saved)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the started job to leave the queue", func() bool {
		return slices.Equal(queuedIDs(t, s), []string{"kept"})
	})
	schedule(t, s, "new", "1h")
	s.stop()
	s2 := run(t, qdir, newFake(), nil)
	if got := queuedIDs(t, s2); !slices.Equal(got, []string{"kept", "new"}) {
		t.Errorf("queue after a restart: %v, want [kept new]", got)
	}
}
