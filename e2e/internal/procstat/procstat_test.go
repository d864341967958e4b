package procstat

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestReadSelf(t *testing.T) {
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.FDs < 3 || before.Threads < 1 || before.RSSKiB <= 0 || before.PPid != os.Getppid() {
		t.Fatalf("implausible figures for this process (parent %d): %+v", os.Getppid(), before)
	}
	var files []*os.File
	for i := 0; i < 10; i++ {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.FDs < before.FDs+10 {
		t.Errorf("10 more open files: fds %d → %d", before.FDs, after.FDs)
	}
	for _, f := range files {
		f.Close()
	}
	runtime.KeepAlive(files)
}

func TestReadGone(t *testing.T) {
	if _, err := Read(1 << 30); err == nil {
		t.Fatal("a pid that does not exist: no error")
	}
}

func TestMountsMentioning(t *testing.T) {
	n, err := MountsMentioning(os.Getpid(), "/proc", "proc")
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Fatalf("no mount line mentions /proc: %d", n)
	}
	if n, _ := MountsMentioning(os.Getpid(), "/no/such/place/at/all"); n != 0 {
		t.Fatalf("%d lines mention a path that is mounted nowhere", n)
	}
}

func TestSubdirs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b/c", "d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "a", "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := Subdirs(root); err != nil || n != 4 {
		t.Fatalf("Subdirs = %d, %v; want 4", n, err)
	}
}
