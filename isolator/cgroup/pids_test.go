package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
)

// TestAllPidsReadsOnlyCgroupfs: outside the unit tests' fake mode a pid
// file elsewhere than on a cgroup file system is refused.
func TestAllPidsReadsOnlyCgroupfs(t *testing.T) {
	dir := t.TempDir()
	writeProcs(t, dir, 1)
	if got, err := allPids(dir); !errors.Is(err, errNotCgroupfs) {
		t.Errorf("a temp dir read as a cgroup: %v, %v", got, err)
	}
}

// writeProcs makes dir with a cgroup.procs of pids and a few other files,
// as a cgroup directory has.
func writeProcs(t *testing.T, dir string, pids ...int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range pids {
		b.WriteString(strconv.Itoa(p) + "\n")
	}
	for name, data := range map[string]string{"cgroup.procs": b.String(), "memory.max": "max\n", "cpu.weight": "100\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAllPidsAsTheLibrary: on a tree of cgroup directories, allPids lists
// what cgroups.GetAllPids lists, in the same order, with and without
// subdirectories, with more pids than its buffer holds (pids cut across
// reads).
func TestAllPidsAsTheLibrary(t *testing.T) {
	fakeCgroupfs(t)
	root := t.TempDir()
	leaf := filepath.Join(root, "leaf")
	writeProcs(t, leaf, 7)
	tree := filepath.Join(root, "tree")
	writeProcs(t, tree, 1, 22, 333)
	writeProcs(t, filepath.Join(tree, "b"), 4444)
	writeProcs(t, filepath.Join(tree, "a"))
	writeProcs(t, filepath.Join(tree, "a", "deep"), 55555, 666666)
	many := make([]int, 400)
	for i := range many {
		many[i] = 4194304 - 997*i
	}
	writeProcs(t, filepath.Join(root, "many"), many...)
	for _, dir := range []string{leaf, tree, filepath.Join(tree, "a"), filepath.Join(root, "many")} {
		want, err := cgroups.GetAllPids(dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := allPids(dir)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("allPids(%s) = %v, %v; the library lists %v", dir, got, err, want)
		}
	}
	if got, err := cgroupPids(tree); err != nil || !slices.Equal(got, []int{1, 22, 333}) {
		t.Errorf("cgroupPids(tree) = %v, %v; want its own three", got, err)
	}
}

func TestAllPidsErrors(t *testing.T) {
	fakeCgroupfs(t)
	root := t.TempDir()
	if _, err := allPids(filepath.Join(root, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing cgroup: %v, want ErrNotExist", err)
	}
	// A descendant without its file (removed while read) is skipped.
	writeProcs(t, filepath.Join(root, "x"), 3)
	if err := os.Mkdir(filepath.Join(root, "x", "half"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := allPids(filepath.Join(root, "x")); err != nil || !slices.Equal(got, []int{3}) {
		t.Errorf("with a vanished child: %v, %v; want [3]", got, err)
	}
	for _, bad := range []string{"12\nab\n", "1 2\n", "99999999999\n"} {
		dir := filepath.Join(root, "bad"+strconv.Itoa(len(bad)))
		writeProcs(t, dir)
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := allPids(dir); err == nil {
			t.Errorf("%q read as %v", bad, got)
		}
	}
}

// TestAllPidsAllocatesLittle: listing a cgroup without subdirectories costs
// its paths and the result, not a scanner or the directory's entries.
func TestAllPidsAllocatesLittle(t *testing.T) {
	fakeCgroupfs(t)
	dir := t.TempDir()
	writeProcs(t, dir, 1234, 5678)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := allPids(dir); err != nil {
			t.Fatal(err)
		}
	})
	lib := testing.AllocsPerRun(100, func() {
		if _, err := cgroups.GetAllPids(dir); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations per call: %v (the library %v)", allocs, lib)
	if allocs > 6 {
		t.Errorf("%v allocations per call, want at most 6 (the library: %v)", allocs, lib)
	}
}

// BenchmarkAllPids: a job's cgroup without sub-cgroups, two processes, as
// the isolator lists it several times per job; against the library.
func BenchmarkAllPids(b *testing.B) {
	cgroups.TestMode = true
	b.Cleanup(func() { cgroups.TestMode = false })
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("1234\n5678\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range 30 { // a v1 memory cgroup has ~30 files
		if err := os.WriteFile(filepath.Join(dir, "memory.f"+strconv.Itoa(i)), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		fn   func(string) ([]int, error)
	}{{"allPids", allPids}, {"library", cgroups.GetAllPids}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.fn(dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
