package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

const envSmallDisk = "JOBLET_TEST_SMALL_DISK"

// smallDisk gives the test a directory on a tmpfs of the given size. As
// root the test runs again, alone, in a private mount namespace (unshare),
// so the mount is seen by nothing else and cannot outlive it; this outer
// run only reports the result (ok false: return at once).
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

// With the log directory on a full disk an append is refused with a
// ResourceExhausted error that says so, the output already stored stays
// whole and readable, and the same append succeeds once space is back, so
// a retrying writer loses nothing.
func TestLogDiskFull(t *testing.T) {
	dir, ok := smallDisk(t, "256k")
	if !ok {
		return
	}
	s := open(t, dir, 1<<30)
	mustAppend(t, s, "1", false, rec(out, 0, "before the disk filled\n"))

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	f.Close()

	big := strings.Repeat("x", 64<<10)
	_, err = s.Append(context.Background(), "1", []logdapi.Record{rec(out, 23, big)}, false)
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "no space left on the server's log disk") {
		t.Fatalf("append on a full disk: %v, want ResourceExhausted naming the log disk", err)
	}
	if got := string(bytesOf(readAll(t, s, "1", 0))); got != "before the disk filled\n" {
		t.Fatalf("after the refused append the log reads %q", got)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if n := mustAppend(t, s, "1", true, rec(out, 23, big)); n != int64(23+len(big)) {
		t.Fatalf("append after space came back accepted up to %d, want %d", n, 23+len(big))
	}
	if got := string(bytesOf(readAll(t, s, "1", 0))); got != "before the disk filled\n"+big {
		t.Fatalf("log after recovery is %d bytes, want the %d of the whole output", len(got), 23+len(big))
	}
}
