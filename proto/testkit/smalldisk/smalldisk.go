// Package smalldisk gives root tests a small filesystem to fill up, to show
// how a service behaves when its disk is full. The mount lives in a private
// mount namespace, so no other process sees it and it cannot outlive the
// test. Only tests import this package.
package smalldisk

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// envInner marks the run of the test binary inside the private namespace.
const envInner = "JOBLET_TEST_SMALL_DISK"

// Dir gives the test a directory on a tmpfs of size (e.g. "256k"). As root,
// the test runs again, alone, under `unshare --mount --propagation private`
// and this outer run only reports that run's result: ok is then false and
// the test must return at once. Without root the test is skipped.
func Dir(t *testing.T, size string) (dir string, ok bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs (in a private mount namespace)")
	}
	if os.Getenv(envInner) == "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", exe, "-test.run", "^"+t.Name()+"$", "-test.v")
		cmd.Env = append(os.Environ(), envInner+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
			t.Fatalf("in a private mount namespace: %v\n%s", err, out)
		}
		return "", false
	}
	dir = t.TempDir()
	Mount(t, dir, size)
	return dir, true
}

// Mount mounts a tmpfs of size on dir until the test ends. The caller must
// already be in a private mount namespace (as Dir's inner run is).
func Mount(t *testing.T, dir, size string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount a small tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
}

// Fill writes to a file in dir until its filesystem is full and returns
// the file's path: removing it gives the space back.
func Fill(t *testing.T, dir string) string {
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
