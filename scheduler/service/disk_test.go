package service

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

const envSmallDisk = "JOBLET_TEST_SMALL_DISK"

// smallDisk gives the test a directory on a tmpfs of the given size. The
// mount must not be seen by, or outlive, anything else: as root, the test
// runs again, alone, in a private mount namespace (unshare), and this outer
// run only reports its result (ok false: return at once).
func smallDisk(t *testing.T, size string) (dir string, ok bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs (in a private mount namespace)")
	}
	if os.Getenv(envSmallDisk) == "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", exe, "-test.run", "^"+t.Name()+"$", "-test.v")
		cmd.Env = append(os.Environ(), envSmallDisk+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
			t.Fatalf("in a private mount namespace: %v\n%s", err, out)
		}
		return "", false
	}
	dir = t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir, true
}

// fill writes to a file in dir until its filesystem is full, and returns
// the file, whose removal gives the space back.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return path
		}
	}
}

// With the scheduler's queue on a full disk: a new schedule and a cancel
// are refused with a clear ResourceExhausted error, the queue in memory and
// on disk stays as it was and is still listed; a job falling due meanwhile
// still starts (once: it stays queued until its removal can be saved, and
// the isolator takes the hand-off again as a success). Once there is
// space, everything is saved and a restart finds the queue right.
func TestQueueDiskFull(t *testing.T) {
	dir, ok := smallDisk(t, "256k")
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

	filler := fill(t, dir)
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
