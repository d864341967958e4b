package access

import (
	"os"
	"path/filepath"
	"testing"
)

func TestAllows(t *testing.T) {
	const owner, group, stranger = 1000, 2000, 4242
	dir := os.ModeDir
	tests := []struct {
		name     string
		mode     os.FileMode
		uid, gid int
		want     bool
	}{
		{"other x", dir | 0o701, stranger, stranger, true},
		{"no bits for other", dir | 0o770, stranger, stranger, false},
		{"group x", dir | 0o710, stranger, group, true},
		{"group without x, other x", dir | 0o701, stranger, group, false}, // group class wins
		{"owner x", dir | 0o700, owner, stranger, true},
		{"owner without x, other x", dir | 0o611, owner, group, false}, // owner class wins
		{"root searches any directory", dir | 0o000, 0, 0, true},
		{"root cannot exec a file without x", 0o644, 0, 0, false},
		{"root execs a file with any x", 0o001, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := allows(tc.mode, owner, group, tc.uid, tc.gid, 0o1); got != tc.want {
				t.Fatalf("allows(%v, %d:%d) = %v, want %v", tc.mode, tc.uid, tc.gid, got, tc.want)
			}
		})
	}
}

// tempTree returns a directory every ancestor of which others may search, or
// skips when the temp location itself is private.
func tempTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	// t.TempDir's per-test parent is created 0700; it is ours to open.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if ok, b, err := Searchable(root, 4242, 4242); err != nil || !ok {
		t.Skipf("temp dir %s is not reachable by others (blocked at %q, err %v)", root, b, err)
	}
	return root
}

func TestSearchableWalksEveryAncestor(t *testing.T) {
	root := tempTree(t)
	mid := filepath.Join(root, "mid")
	leaf := filepath.Join(mid, "a", "leaf")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := Searchable(leaf, 4242, 4242); err != nil || !ok {
		t.Fatalf("open tree: ok=%v err=%v, want searchable", ok, err)
	}
	if err := os.Chmod(mid, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(mid, 0o755) })
	ok, blocker, err := Searchable(leaf, 4242, 4242)
	if err != nil || ok || blocker != mid {
		t.Fatalf("0700 ancestor: ok=%v blocker=%q err=%v, want blocked at %s", ok, blocker, err, mid)
	}
	if _, _, err := Searchable(filepath.Join(root, "missing"), 4242, 4242); err == nil {
		t.Fatal("missing directory: want an error")
	}
}

func TestExecutable(t *testing.T) {
	dir := tempTree(t)
	bin := filepath.Join(dir, "prog")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o750); err != nil {
		t.Fatal(err)
	}
	if ok, blocker, err := Executable(bin, 4242, 4242); err != nil || ok || blocker != bin {
		t.Fatalf("mode 0750 for a stranger: ok=%v blocker=%q err=%v, want refused at the file", ok, blocker, err)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := Executable(bin, 4242, 4242); err != nil || !ok {
		t.Fatalf("mode 0755 for a stranger: ok=%v err=%v, want allowed", ok, err)
	}
}

func TestChain(t *testing.T) {
	got := chain("/a/b/c")
	want := []string{"/", "/a", "/a/b", "/a/b/c"}
	if len(got) != len(want) {
		t.Fatalf("chain = %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("chain = %v, want %v", got, want)
		}
	}
}
