package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// noSpace is what a clear "disk full" error says, in one of its words.
var noSpace = regexp.MustCompile(`(?i)no space|disk (is )?full|out of (disk )?space`)

// TestReliabilityDiskFull runs a suite whose dev dir (state and logs) is on
// a small ext4 loop filesystem, mounted in the test's private mount
// namespace, fills it, and expects: a clear error to the user on run and
// on network create, the earlier records, logs and networks intact and
// still answered (list, status, log, network list), and, once space is
// freed, runs working again.
func TestReliabilityDiskFull(t *testing.T) {
	if theSuite == nil {
		t.Skip(skipReason)
	}
	mnt := loopFS(t, 64)
	s := ownSuite(t, suiteOptions{devDir: filepath.Join(mnt, "dev")})

	if r := s.rnx(t, "network", "create", "fullnet", "--cidr=10.79.0.0/24"); r.code != 0 {
		t.Fatalf("network create: %v", r)
	}
	id, r := s.run(t, "sh", "-c", "seq 100; echo before the disk filled")
	want := r.stdout
	before := s.list(t)

	fill := filepath.Join(mnt, "fill")
	n := fillUp(t, fill)
	t.Logf("filled the state filesystem with %d MiB", n>>20)

	r = s.rnx(t, "run", "echo", "disk is full")
	if r.code == 0 {
		t.Errorf("rnx run with the state disk full succeeded: %v", r)
	} else if !noSpace.MatchString(r.stderr) {
		t.Errorf("rnx run with the state disk full: want a clear \"no space\" error; got %v", r)
	} else {
		oneLine(t, "rnx run with the disk full", r.stderr)
	}
	if r := s.rnx(t, "network", "create", "fullnet2", "--cidr=10.80.0.0/24"); r.code == 0 || !noSpace.MatchString(r.stderr) {
		t.Errorf("network create with the disk full: want a clear \"no space\" error; got %v", r)
	}
	// Reads are still answered, and what was there is intact.
	after := s.list(t)
	for jid, rec := range before {
		if got, ok := after[jid]; !ok || jsonString(got) != jsonString(rec) {
			t.Errorf("job %s with the disk full: before %s, after %s", jid, jsonString(rec), jsonString(got))
		}
	}
	if st := s.field(t, id, "Status"); st != "COMPLETED" {
		t.Errorf("rnx status with the disk full: %q", st)
	}
	if l := s.rnx(t, "log", id); l.code != 0 || l.stdout != want {
		t.Errorf("rnx log with the disk full: %v", l)
	}
	if nl := s.rnx(t, "network", "list"); nl.code != 0 || !strings.Contains(nl.stdout, "fullnet") {
		t.Errorf("network list with the disk full: %v", nl)
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		r := s.rnx(t, "run", "echo", "space again")
		if r.code == 0 && r.stdout == "space again\n" {
			t.Logf("runs work again %v after the space was freed", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("runs still fail 15s after the space was freed: %v", r)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r := s.rnx(t, "network", "create", "fullnet2", "--cidr=10.80.0.0/24"); r.code != 0 {
		t.Errorf("network create after the space was freed: %v", r)
	}
	if l := s.rnx(t, "log", id); l.stdout != want {
		t.Errorf("rnx log after the space was freed: %v", l)
	}
}

// loopFS makes a sizeMiB ext4 filesystem in a file, mounts it (with no
// blocks reserved for root, so root can fill it) in the test's private
// mount namespace, and unmounts it and detaches its loop device when the
// test ends. It returns the mount point.
func loopFS(t *testing.T, sizeMiB int64) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "joblet-e2e-loop-")
	if err != nil {
		t.Fatal(err)
	}
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, c := range [][]string{
		{"mkfs.ext4", "-q", "-F", "-m", "0", img},
		{"mount", "-o", "loop", img, mnt},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", strings.Join(c, " "), err, out)
		}
	}
	t.Cleanup(func() {
		// After the suite's own clean-up (cleanups run last-in first-out).
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
			return
		}
		// mount -o loop sets autoclear; check the device is really gone.
		if out, _ := exec.Command("losetup", "-j", img).Output(); strings.TrimSpace(string(out)) != "" {
			t.Errorf("loop device still attached to %s: %s", img, out)
		}
	})
	if err := os.Chmod(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// fillUp writes zeros to path until the filesystem is full and returns how
// many bytes it wrote.
func fillUp(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
	// The last blocks, a few bytes at a time.
	for _, err := f.Write(buf[:512]); err == nil; _, err = f.Write(buf[:512]) {
		n += 512
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(fmt.Errorf("sync %s: %w", path, err))
	}
	return n
}
