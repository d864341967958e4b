// Package upload is rnx's side of uploads: it turns --upload and
// --upload-dir into a plan (the manifest the isolator checks and the local
// files behind it), streams the files from disk in chunks after the
// manifest, and shows the progress. No file is ever held whole in memory.
package upload

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Entry is one file or directory to create under /work.
type Entry struct {
	Path   string // under /work, slash-separated, e.g. "data/in.csv"
	Source string // the local path it is read from
	Mode   uint32 // permission bits only: setuid, setgid and sticky are dropped
	Dir    bool
	Size   int64 // bytes of a file, as found by the walk
}

// Plan is everything one run uploads, in manifest order: each directory
// before what it holds.
type Plan struct {
	Entries []Entry
	Files   int   // regular files among the entries
	Bytes   int64 // their sizes added up
}

// Build plans the upload of files (each to /work/<its name>) and dirs
// (each to /work/<its name>/..., or, for ".", its contents straight into
// /work); relative paths are taken from the directory cwd. Only regular
// files and directories are uploaded: a symbolic link, device, FIFO or
// socket is an error naming it, as is a name that would arrive twice.
func Build(cwd string, files, dirs []string) (*Plan, error) {
	p := &Plan{}
	seen := map[string]string{} // path under /work → local source
	add := func(e Entry) error {
		if prev, ok := seen[e.Path]; ok {
			return fmt.Errorf("upload: %s and %s would both be /work/%s", prev, e.Source, e.Path)
		}
		seen[e.Path] = e.Source
		p.Entries = append(p.Entries, e)
		if !e.Dir {
			p.Files++
			p.Bytes += e.Size
		}
		return nil
	}
	for _, f := range files {
		f = local(cwd, f)
		fi, err := lstat(f)
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("upload: %s is a directory; use --upload-dir", f)
		}
		name, err := baseName(f)
		if err != nil {
			return nil, err
		}
		if err := add(Entry{Path: name, Source: f, Mode: uint32(fi.Mode().Perm()), Size: fi.Size()}); err != nil {
			return nil, err
		}
	}
	for _, d := range dirs {
		if err := walkDir(local(cwd, d), filepath.Clean(d) == ".", add); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// local is where p is on this machine.
func local(cwd, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(cwd, p)
}

// walkDir adds dir and everything under it; with contentsOnly, only what
// is under it, at the top of /work.
func walkDir(dir string, contentsOnly bool, add func(Entry) error) error {
	fi, err := lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("upload: %s is not a directory; use --upload", dir)
	}
	prefix := ""
	if !contentsOnly {
		if prefix, err = baseName(dir); err != nil {
			return err
		}
	}
	return filepath.WalkDir(dir, func(local string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		rel, err := filepath.Rel(dir, local)
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		target := path.Join(prefix, filepath.ToSlash(rel))
		if target == "." {
			return nil // the contents of "." go straight into /work
		}
		fi, err := lstat(local)
		if err != nil {
			return err
		}
		return add(Entry{Path: target, Source: local, Mode: uint32(fi.Mode().Perm()), Dir: fi.IsDir(), Size: sizeOf(fi)})
	})
}

func sizeOf(fi fs.FileInfo) int64 {
	if fi.IsDir() {
		return 0
	}
	return fi.Size()
}

// lstat returns what p is, refusing anything but a regular file or a
// directory.
func lstat(p string) (fs.FileInfo, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("upload: %s does not exist", p)
	}
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	switch t := fi.Mode().Type(); {
	case t == 0, t == fs.ModeDir:
		return fi, nil
	case t&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("upload: %s is a symbolic link; only regular files and directories can be uploaded", p)
	default:
		return nil, fmt.Errorf("upload: %s is a %s; only regular files and directories can be uploaded", p, typeName(t))
	}
}

func typeName(t fs.FileMode) string {
	switch {
	case t&fs.ModeNamedPipe != 0:
		return "FIFO"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// baseName is the name p arrives under in /work.
func baseName(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("upload: %w", err)
	}
	name := filepath.Base(abs)
	if name == string(filepath.Separator) || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("upload: cannot upload %s: it has no name to give it in /work", p)
	}
	return name, nil
}

// Manifest is the plan as the isolator sees it.
func (p *Plan) Manifest() []*jobletv1.UploadEntry {
	out := make([]*jobletv1.UploadEntry, len(p.Entries))
	for i, e := range p.Entries {
		out[i] = &jobletv1.UploadEntry{Path: e.Path, Mode: e.Mode, Dir: e.Dir, Size: e.Size}
	}
	return out
}
