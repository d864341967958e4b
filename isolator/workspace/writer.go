package workspace

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// Writer fills one workspace with one validated upload. Files are written
// in manifest order, chunk by chunk, straight to disk. Its methods may be
// called from several goroutines (an Abort on cancellation, say), but the
// chunks of one upload come from one stream, in order.
//
// Any error is final: later calls return it, and the caller calls Abort.
type Writer struct {
	mu      sync.Mutex
	root    *os.Root // nil once closed or aborted
	entries []Entry
	limits  Limits
	dirs    []dir

	cur     int      // the file started last, -1 before the first
	next    int      // the first entry not started yet
	f       *os.File // cur's file while it is being written
	written int64    // bytes received for cur
	total   int64    // bytes received for all files
	err     error
}

type dir struct {
	path string
	perm os.FileMode
}

// Create validates entries (see ValidateManifest) and makes the upload's
// directories, in manifest order, inside dir: the job's workspace, which
// must exist and be empty. A directory that is not declared but holds a
// declared entry is made with mode 0755. Every access goes through an
// os.Root on dir. On error nothing is left in dir.
func Create(dir string, entries []Entry, l Limits) (*Writer, error) {
	l = l.withDefaults()
	if err := ValidateManifest(entries, l); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open workspace: %w", err)
	}
	w := &Writer{root: root, entries: entries, limits: l, dirs: dirsOf(entries), cur: -1}
	if err := w.checkEmpty(); err != nil {
		root.Close()
		return nil, err
	}
	for _, d := range w.dirs {
		// Owner-only until Close sets the final mode, and never an
		// existing entry: the workspace was empty, so one is planted.
		if err := root.Mkdir(d.path, 0o700); err != nil {
			w.Abort()
			return nil, fmt.Errorf("upload %s: %w", quote(d.path), err)
		}
	}
	return w, nil
}

// dirsOf lists every directory to make, declared or implied by a deeper
// entry, each after its parent, with its final permissions.
func dirsOf(entries []Entry) []dir {
	var dirs []dir
	seen := map[string]int{}
	add := func(p string, perm os.FileMode, declared bool) {
		if i, ok := seen[p]; ok {
			if declared {
				dirs[i].perm = perm
			}
			return
		}
		seen[p] = len(dirs)
		dirs = append(dirs, dir{path: p, perm: perm})
	}
	for _, e := range entries {
		parts := strings.Split(e.Path, "/")
		for i := 1; i < len(parts); i++ {
			add(strings.Join(parts[:i], "/"), 0o755, false)
		}
		if e.Dir {
			add(e.Path, permOf(e), true)
		}
	}
	return dirs
}

func (w *Writer) checkEmpty() error {
	d, err := w.root.Open(".")
	if err != nil {
		return fmt.Errorf("open workspace: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if len(names) > 0 {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "the workspace is not empty")
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read workspace: %w", err)
	}
	return nil
}

// Write appends data to the file at index in the manifest. Files must be
// written in manifest order: a chunk for a later file finishes the current
// one (which must then have all its declared bytes), and a chunk for an
// earlier file is an error. The bytes received are counted against the
// file's declared size and against the limits before they are written.
func (w *Writer) Write(index int, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	w.err = w.write(index, data)
	return w.err
}

func (w *Writer) write(index int, data []byte) error {
	if index < 0 || index >= len(w.entries) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload chunk for entry %d; the upload has %d entries", index, len(w.entries))
	}
	e := w.entries[index]
	if e.Dir {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload chunk for %s, which is a directory", quote(e.Path))
	}
	if index != w.cur {
		if index < w.next {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload %s arrived after %s; files must be sent in order", quote(e.Path), quote(w.entries[w.cur].Path))
		}
		if err := w.finish(); err != nil {
			return err
		}
		if err := w.startUpTo(index); err != nil {
			return err
		}
	}
	n := int64(len(data))
	switch {
	case w.written+n > w.limits.MaxFileBytes:
		return errdefs.Errorf(errdefs.ErrResourceExhausted, "upload %s is at least %d bytes; the limit per file is %s", quote(e.Path), w.written+n, sizeString(w.limits.MaxFileBytes))
	case w.total+n > w.limits.MaxTotalBytes:
		return errdefs.Errorf(errdefs.ErrResourceExhausted, "upload %s brings the total to at least %d bytes; the limit per job is %s", quote(e.Path), w.total+n, sizeString(w.limits.MaxTotalBytes))
	case w.written+n > e.Size:
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload %s sent more than its declared %d bytes", quote(e.Path), e.Size)
	}
	if _, err := w.f.Write(data); err != nil {
		return fmt.Errorf("upload %s: %w", quote(e.Path), err)
	}
	w.written += n
	w.total += n
	return nil
}

// startUpTo creates the files before index that got no chunk (they must be
// empty) and opens the file at index as the current one.
func (w *Writer) startUpTo(index int) error {
	for ; w.next <= index; w.next++ {
		if w.entries[w.next].Dir {
			continue
		}
		if err := w.open(w.next); err != nil {
			return err
		}
		if w.next < index {
			if err := w.finish(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *Writer) open(i int) error {
	p := w.entries[i].Path
	// O_EXCL never opens an existing file: not one planted there, not a
	// hardlink to a file elsewhere, and not a symlink's target.
	f, err := w.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("upload %s: %w", quote(p), err)
	}
	w.f, w.cur, w.written = f, i, 0
	return nil
}

// finish checks that the current file got all its declared bytes and gives
// it its mode, through its descriptor so no path is resolved again.
func (w *Writer) finish() error {
	if w.f == nil {
		return nil
	}
	e := w.entries[w.cur]
	f := w.f
	w.f = nil
	if w.written != e.Size {
		f.Close()
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload %s ended after %d of its declared %d bytes", quote(e.Path), w.written, e.Size)
	}
	if err := f.Chmod(permOf(e)); err != nil {
		f.Close()
		return fmt.Errorf("upload %s: %w", quote(e.Path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("upload %s: %w", quote(e.Path), err)
	}
	return nil
}

// Close finishes the upload: it checks that every file got exactly its
// declared size (creating the empty files that got no chunk) and gives the
// directories their modes. After a successful Close, Abort does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if w.err = w.close(); w.err != nil {
		return w.err
	}
	w.err = w.root.Close()
	w.root = nil
	return w.err
}

func (w *Writer) close() error {
	if err := w.finish(); err != nil {
		return err
	}
	if w.next < len(w.entries) {
		if err := w.startUpTo(len(w.entries) - 1); err != nil {
			return err
		}
		if err := w.finish(); err != nil {
			return err
		}
	}
	// Deepest first, so a parent without search permission does not stop
	// its children from getting theirs.
	dirs := slices.Clone(w.dirs)
	slices.SortStableFunc(dirs, func(a, b dir) int {
		return strings.Count(b.path, "/") - strings.Count(a.path, "/")
	})
	for _, d := range dirs {
		if err := w.chmodDir(d); err != nil {
			return fmt.Errorf("upload %s: %w", quote(d.path), err)
		}
	}
	return nil
}

// chmodDir sets a directory's mode through a descriptor, after checking
// that the path is still the directory made by Create and not a symlink.
func (w *Writer) chmodDir(d dir) error {
	before, err := w.root.Lstat(d.path)
	if err != nil {
		return err
	}
	if !before.IsDir() {
		return errors.New("no longer a directory")
	}
	f, err := w.root.Open(d.path)
	if err != nil {
		return err
	}
	defer f.Close()
	after, err := f.Stat()
	if err != nil {
		return err
	}
	if !os.SameFile(before, after) {
		return errors.New("replaced while uploading")
	}
	return f.Chmod(d.perm)
}

func (w *Writer) usable() error {
	if w.root == nil {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "the upload is already finished")
	}
	return w.err
}

// Abort removes everything in the workspace, so a cancelled or failed
// upload leaves nothing behind; the workspace directory itself stays (its
// owner removes it). It does nothing after a successful Close or a previous
// Abort, so "defer w.Abort()" is the usual way to call it.
func (w *Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.root == nil {
		return nil
	}
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	err := w.removeAll()
	w.root.Close()
	w.root = nil
	return err
}

// removeAll empties the workspace. os.Root.RemoveAll removes a symlink, not
// what it points to.
func (w *Writer) removeAll() error {
	d, err := w.root.Open(".")
	if err != nil {
		return fmt.Errorf("open workspace: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read workspace: %w", err)
	}
	var errs []error
	for _, name := range names {
		if err := w.root.RemoveAll(name); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", quote(name), err))
		}
	}
	return errors.Join(errs...)
}
