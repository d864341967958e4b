package workspace

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// fixture is a workspace next to an outside directory holding a sentinel
// file; no upload may ever change anything outside the workspace.
type fixture struct {
	ws, outside, sentinel string
	before                []string // the outside tree, as snapshot shows it
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	fx := &fixture{ws: filepath.Join(base, "ws"), outside: filepath.Join(base, "outside")}
	fx.sentinel = filepath.Join(fx.outside, "secret")
	for _, d := range []string{fx.ws, fx.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(fx.sentinel, []byte("sentinel"), 0o640); err != nil {
		t.Fatal(err)
	}
	// An old mtime, so a write in the same clock tick would still show.
	old := time.Unix(1e9, 0)
	for _, p := range []string{fx.sentinel, fx.outside} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	fx.before = snapshot(t, fx.outside)
	t.Cleanup(func() { fx.checkOutside(t) })
	return fx
}

// snapshot describes every entry under dir: name, mode, size, mtime and,
// for files, content.
func snapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		line := strings.Join([]string{p, fi.Mode().String(), fi.ModTime().String()}, " ")
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (fx *fixture) checkOutside(t *testing.T) {
	t.Helper()
	if after := snapshot(t, fx.outside); !slices.Equal(after, fx.before) {
		t.Errorf("outside changed:\n before %q\n after  %q", fx.before, after)
	}
}

func (fx *fixture) wsNames(t *testing.T) []string {
	t.Helper()
	var names []string
	err := filepath.Walk(fx.ws, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != fx.ws {
			rel, _ := filepath.Rel(fx.ws, p)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func (fx *fixture) checkEmpty(t *testing.T) {
	t.Helper()
	if names := fx.wsNames(t); len(names) != 0 {
		t.Errorf("workspace not empty: %q", names)
	}
}

func mustCreate(t *testing.T, fx *fixture, entries []Entry, l Limits) *Writer {
	t.Helper()
	w, err := Create(fx.ws, entries, l)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return w
}

func wantErr(t *testing.T, err, kind error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %q", msg)
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Errorf("kind of %q is not %v", err, kind)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not say %q", err, msg)
	}
}

func TestWriteTree(t *testing.T) {
	fx := newFixture(t)
	script := []byte("#!/bin/sh\necho hi\n")
	blob := bytes.Repeat([]byte{0, 1, 2, 0xff}, 3000)
	entries := []Entry{
		{Path: "bin", Mode: 0o40750, Dir: true},
		{Path: "bin/run.sh", Mode: 0o104755, Size: int64(len(script))}, // setuid dropped
		{Path: "empty", Mode: 0o640},
		{Path: "empty-dir", Mode: 0o3775, Dir: true}, // setgid and sticky dropped
		{Path: "data/nested/blob", Mode: 0o600, Size: int64(len(blob))},
		{Path: "data/nested/also-empty", Mode: 0o2644}, // never gets a chunk
		{Path: "data", Mode: 0o711, Dir: true},         // declared after its child
		{Path: "locked", Mode: 0o500, Dir: true},       // no write permission: set after its child is in
		{Path: "locked/inside", Mode: 0o644},
		{Path: "last-empty", Mode: 0o444},
	}
	w := mustCreate(t, fx, entries, Limits{})
	defer w.Abort()
	t.Cleanup(func() { os.Chmod(filepath.Join(fx.ws, "locked"), 0o700) }) // so TempDir can go when not root
	if err := w.Write(1, script); err != nil {
		t.Fatal(err)
	}
	for chunk := range slices.Chunk(blob, 1000) {
		if err := w.Write(4, chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after Close: %v", err)
	}

	want := map[string]struct {
		mode os.FileMode
		data []byte
	}{
		"bin":                    {os.ModeDir | 0o750, nil},
		"bin/run.sh":             {0o755, script},
		"empty":                  {0o640, []byte{}},
		"empty-dir":              {os.ModeDir | 0o775, nil},
		"data":                   {os.ModeDir | 0o711, nil},
		"data/nested":            {os.ModeDir | 0o755, nil},
		"data/nested/blob":       {0o600, blob},
		"data/nested/also-empty": {0o644, []byte{}},
		"locked":                 {os.ModeDir | 0o500, nil},
		"locked/inside":          {0o644, []byte{}},
		"last-empty":             {0o444, []byte{}},
	}
	names := fx.wsNames(t)
	if len(names) != len(want) {
		t.Errorf("workspace has %q", names)
	}
	for name, w := range want {
		p := filepath.Join(fx.ws, name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != w.mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), w.mode)
		}
		if w.data != nil {
			if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, w.data) {
				t.Errorf("%s: content differs (%d bytes, %v)", name, len(b), err)
			}
		}
	}
	if err := w.Write(1, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Write after Close: %v", err)
	}
}

func TestCreateRefusesBeforeWriting(t *testing.T) {
	for _, p := range []string{"../outside/secret", "../outside/new", "/abs", "a/../../outside/new", "a\x00b", strings.Repeat("n", 256), "./x"} {
		t.Run(p, func(t *testing.T) {
			fx := newFixture(t)
			_, err := Create(fx.ws, []Entry{file("ok", 0), file(p, 1)}, Limits{})
			wantErr(t, err, errdefs.ErrInvalidArgument, "upload path")
			fx.checkEmpty(t)
		})
	}
	t.Run("device", func(t *testing.T) {
		fx := newFixture(t)
		_, err := Create(fx.ws, []Entry{dirEntry("d"), {Path: "d/null", Mode: 0o20666}}, Limits{})
		wantErr(t, err, errdefs.ErrInvalidArgument, "a character device")
		fx.checkEmpty(t)
	})
}

func TestCreateRefusesNonEmptyWorkspace(t *testing.T) {
	fx := newFixture(t)
	// A symlink planted before the upload: "link/new" would land outside.
	if err := os.Symlink(fx.outside, filepath.Join(fx.ws, "link")); err != nil {
		t.Fatal(err)
	}
	_, err := Create(fx.ws, []Entry{file("link/new", 1)}, Limits{})
	wantErr(t, err, errdefs.ErrFailedPrecondition, "the workspace is not empty")
}

// plant replaces the entry at name in the workspace with a symlink to
// target.
func plant(t *testing.T, fx *fixture, name, target string) {
	t.Helper()
	p := filepath.Join(fx.ws, name)
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestPlantedLinks(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		// plant runs after Create; it may write earlier entries first.
		plant func(t *testing.T, fx *fixture, w *Writer)
		index int // the entry then written
	}{
		{
			name:    "absolute symlink as a declared directory",
			entries: []Entry{dirEntry("link"), file("link/new", 1)},
			plant:   func(t *testing.T, fx *fixture, _ *Writer) { plant(t, fx, "link", fx.outside) },
			index:   1,
		},
		{
			name:    "relative symlink as an implied directory",
			entries: []Entry{file("link/new", 1)},
			plant:   func(t *testing.T, fx *fixture, _ *Writer) { plant(t, fx, "link", "../outside") },
		},
		{
			name:    "symlink at the file's own path",
			entries: []Entry{file("secret", 1)},
			plant:   func(t *testing.T, fx *fixture, _ *Writer) { plant(t, fx, "secret", fx.sentinel) },
		},
		{
			name:    "relative symlink at the file's own path",
			entries: []Entry{file("secret", 1)},
			plant:   func(t *testing.T, fx *fixture, _ *Writer) { plant(t, fx, "secret", "../outside/secret") },
		},
		{
			name:    "hardlink at the file's own path",
			entries: []Entry{file("secret", 1)},
			plant: func(t *testing.T, fx *fixture, _ *Writer) {
				if err := os.Link(fx.sentinel, filepath.Join(fx.ws, "secret")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:    "directory swapped for a symlink while writing",
			entries: []Entry{dirEntry("d"), file("d/a", 2), file("d/new", 1)},
			plant: func(t *testing.T, fx *fixture, w *Writer) {
				if err := w.Write(1, []byte("x")); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(fx.ws, "d"), filepath.Join(fx.ws, "moved")); err != nil {
					t.Fatal(err)
				}
				plant(t, fx, "d", fx.outside)
				if err := w.Write(1, []byte("y")); err != nil { // the open file is unaffected
					t.Fatal(err)
				}
			},
			index: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			w := mustCreate(t, fx, tt.entries, Limits{})
			tt.plant(t, fx, w)
			err := w.Write(tt.index, []byte("!"))
			if err == nil {
				t.Fatal("write through a planted link succeeded")
			}
			t.Logf("refused: %v", err)
			fx.checkOutside(t)
			if err := w.Close(); err == nil {
				t.Error("Close succeeded after a failed write")
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
			fx.checkEmpty(t)
		})
	}
}

func TestCloseDoesNotChmodThroughSymlink(t *testing.T) {
	fx := newFixture(t)
	w := mustCreate(t, fx, []Entry{{Path: "d", Mode: 0o777, Dir: true}, {Path: "f", Mode: 0o777}}, Limits{})
	plant(t, fx, "d", fx.outside)
	wantErr(t, w.Close(), nil, `upload "d": no longer a directory`)
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	fx.checkEmpty(t)
}

func TestLimitsOnReceivedBytes(t *testing.T) {
	l := Limits{MaxFileBytes: 10, MaxTotalBytes: 15}
	tests := []struct {
		name    string
		entries []Entry
		chunks  [][2]int // entry index, bytes
		kind    error    // nil: accepted
		msg     string
	}{
		{name: "file at N", entries: []Entry{file("f", 10)}, chunks: [][2]int{{0, 10}}},
		{name: "file at N in chunks", entries: []Entry{file("f", 10)}, chunks: [][2]int{{0, 3}, {0, 0}, {0, 7}}},
		{name: "file at N+1, declared honestly", entries: []Entry{file("f", 11)},
			kind: errdefs.ErrResourceExhausted, msg: `upload "f" is 11 bytes; the limit per file is 10`},
		{name: "file at N+1, declared N", entries: []Entry{file("f", 10)}, chunks: [][2]int{{0, 10}, {0, 1}},
			kind: errdefs.ErrResourceExhausted, msg: `upload "f" is at least 11 bytes; the limit per file is 10`},
		{name: "file at N+1, declared 1", entries: []Entry{file("f", 1)}, chunks: [][2]int{{0, 11}},
			kind: errdefs.ErrResourceExhausted, msg: `upload "f" is at least 11 bytes; the limit per file is 10`},
		{name: "more than declared", entries: []Entry{file("f", 4)}, chunks: [][2]int{{0, 4}, {0, 1}},
			kind: errdefs.ErrInvalidArgument, msg: `upload "f" sent more than its declared 4 bytes`},
		{name: "total at N", entries: []Entry{file("a", 10), file("b", 5)}, chunks: [][2]int{{0, 10}, {1, 5}}},
		{name: "total at N+1, declared honestly", entries: []Entry{file("a", 10), file("b", 6)},
			kind: errdefs.ErrResourceExhausted, msg: `upload "b" brings the total to 16 bytes; the limit per job is 15`},
		{name: "total at N+1, declared N", entries: []Entry{file("a", 10), file("b", 5)}, chunks: [][2]int{{0, 10}, {1, 6}},
			kind: errdefs.ErrResourceExhausted, msg: `upload "b" brings the total to at least 16 bytes; the limit per job is 15`},
		{name: "short file", entries: []Entry{file("a", 5), file("b", 0)}, chunks: [][2]int{{0, 3}, {1, 0}},
			kind: errdefs.ErrInvalidArgument, msg: `upload "a" ended after 3 of its declared 5 bytes`},
		{name: "short last file", entries: []Entry{file("a", 5)}, chunks: [][2]int{{0, 4}},
			kind: errdefs.ErrInvalidArgument, msg: `upload "a" ended after 4 of its declared 5 bytes`},
		{name: "skipped file", entries: []Entry{file("a", 2), file("b", 1)}, chunks: [][2]int{{1, 1}},
			kind: errdefs.ErrInvalidArgument, msg: `upload "a" ended after 0 of its declared 2 bytes`},
		{name: "missing last file", entries: []Entry{file("a", 1), file("b", 1)}, chunks: [][2]int{{0, 1}},
			kind: errdefs.ErrInvalidArgument, msg: `upload "b" ended after 0 of its declared 1 bytes`},
		{name: "out of order", entries: []Entry{file("a", 1), file("b", 1)}, chunks: [][2]int{{1, 1}, {0, 1}},
			kind: errdefs.ErrInvalidArgument, msg: `upload "a" ended after 0 of its declared 1 bytes`},
		{name: "back to an earlier file", entries: []Entry{file("a", 2), file("b", 1)}, chunks: [][2]int{{0, 2}, {1, 1}, {0, 1}},
			kind: errdefs.ErrInvalidArgument, msg: `upload "a" arrived after "b"; files must be sent in order`},
		{name: "chunk for a directory", entries: []Entry{dirEntry("d")}, chunks: [][2]int{{0, 1}},
			kind: errdefs.ErrInvalidArgument, msg: `upload chunk for "d", which is a directory`},
		{name: "chunk for no entry", entries: []Entry{file("a", 1)}, chunks: [][2]int{{1, 1}},
			kind: errdefs.ErrInvalidArgument, msg: `upload chunk for entry 1; the upload has 1 entries`},
		{name: "negative index", entries: []Entry{file("a", 1)}, chunks: [][2]int{{-1, 1}},
			kind: errdefs.ErrInvalidArgument, msg: `upload chunk for entry -1; the upload has 1 entries`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			err := run(fx, tt.entries, l, tt.chunks)
			if tt.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(fx.wsNames(t)) != len(tt.entries) {
					t.Errorf("workspace has %q", fx.wsNames(t))
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %q", tt.msg)
			}
			if !errors.Is(err, tt.kind) || err.Error() != tt.msg {
				t.Errorf("error %q (kind %v), want %q (kind %v)", err, errors.Is(err, tt.kind), tt.msg, tt.kind)
			}
			fx.checkEmpty(t)
		})
	}
}

// run uploads entries as a server would: Create, the chunks, Close, and
// Abort on any error.
func run(fx *fixture, entries []Entry, l Limits, chunks [][2]int) (err error) {
	w, err := Create(fx.ws, entries, l)
	if err != nil {
		return err
	}
	defer w.Abort()
	for _, c := range chunks {
		if err := w.Write(c[0], bytes.Repeat([]byte("z"), c[1])); err != nil {
			if err2 := w.Close(); !errors.Is(err2, err) {
				return errors.New("Close did not repeat the write's error")
			}
			return err
		}
	}
	return w.Close()
}

func TestAbortEmptiesWorkspace(t *testing.T) {
	fx := newFixture(t)
	w := mustCreate(t, fx, []Entry{{Path: "d", Mode: 0o500, Dir: true}, file("d/a", 3), file("d/e/b", 4)}, Limits{})
	for _, c := range []struct {
		i int
		s string
	}{{1, "abc"}, {2, "de"}} {
		if err := w.Write(c.i, []byte(c.s)); err != nil {
			t.Fatal(err)
		}
	}
	// Planted during the upload, so Abort meets a symlink it must remove
	// without following.
	if err := os.Symlink(fx.outside, filepath.Join(fx.ws, "d", "planted")); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	fx.checkEmpty(t)
	if _, err := os.Stat(fx.ws); err != nil {
		t.Errorf("the workspace itself is gone: %v", err)
	}
	if err := w.Write(2, []byte("f")); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Write after Abort: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
}

func TestEmptyUpload(t *testing.T) {
	fx := newFixture(t)
	w := mustCreate(t, fx, nil, Limits{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fx.checkEmpty(t)
}

// TestAbortDuringWrites is for the race detector: a cancelled stream may
// call Abort while its handler is still writing.
func TestAbortDuringWrites(t *testing.T) {
	fx := newFixture(t)
	w := mustCreate(t, fx, []Entry{file("f", 1000)}, Limits{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			if w.Write(0, []byte("x")) != nil {
				return
			}
		}
	}()
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	<-done
	fx.checkEmpty(t)
}
