// Package atomicfile replaces files so that a reader, or the next start after
// a crash, sees either the old content or the new, never a torn mix.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// tempPrefix starts the name of path's temporary files, so RemoveTemps can
// find what a crash left.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp" }

// WriteFile replaces path with data: a temporary file in the same directory
// (mode perm), fsync, rename over path, then fsync of the directory so the
// rename itself is durable. On error path is unchanged and no temporary file
// is left.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileOwned(path, data, perm, -1, -1)
}

// WriteFileOwned is WriteFile for a file that must belong to uid and gid
// (-1 keeps the writer's) from the moment it appears under its name.
func WriteFileOwned(path string, data []byte, perm os.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && (uid != -1 || gid != -1) {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// RemoveTemps removes the temporary files that a crash in the middle of a
// WriteFile of path left in its directory; path itself is never touched.
func RemoveTemps(path string) error {
	dir := filepath.Dir(path)
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	var errs []error
	for _, de := range des {
		if strings.HasPrefix(de.Name(), tempPrefix(path)) {
			if err := os.Remove(filepath.Join(dir, de.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove leftover %s: %w", de.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
