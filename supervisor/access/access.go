// Package access answers whether an unprivileged uid/gid can reach a path,
// from the mode bits of each directory on the way. The gateway runs with no
// supplementary groups, so its primary gid is the only group that counts.
package access

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Searchable reports whether uid/gid can traverse every directory from / down
// to dir inclusive. When it cannot, blocker names the first directory in the
// way.
func Searchable(dir string, uid, gid int) (ok bool, blocker string, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return false, "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	for _, d := range chain(dir) {
		allowed, err := permits(d, uid, gid, 0o1)
		if err != nil {
			return false, "", err
		}
		if !allowed {
			return false, d, nil
		}
	}
	return true, "", nil
}

// Executable reports whether uid/gid can exec the file at path: every
// directory on the way is searchable and the file has an x bit for it.
func Executable(path string, uid, gid int) (ok bool, blocker string, err error) {
	if ok, blocker, err = Searchable(filepath.Dir(path), uid, gid); !ok || err != nil {
		return ok, blocker, err
	}
	allowed, err := permits(path, uid, gid, 0o1)
	if err != nil || !allowed {
		return false, path, err
	}
	return true, "", nil
}

// chain lists "/", "/a", "/a/b", ... down to dir.
func chain(dir string) []string {
	var out []string
	for d := dir; ; d = filepath.Dir(d) {
		out = append([]string{d}, out...)
		if d == filepath.Dir(d) {
			return out
		}
	}
}

// permits checks one permission bit (1 = x, 2 = w, 4 = r) of path for
// uid/gid.
func permits(path string, uid, gid int, bit os.FileMode) (bool, error) {
	fi, err := os.Stat(path) // follow symlinks: the kernel walks their targets
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, fmt.Errorf("stat %s: no owner information", path)
	}
	return allows(fi.Mode(), int(st.Uid), int(st.Gid), uid, gid, bit), nil
}

// allows decides like the kernel: the owner class if uid owns the file, else
// the group class if gid matches, else other (one class only, no fallback);
// root may search any directory and exec any file with some x bit.
func allows(mode os.FileMode, ownerUID, ownerGID, uid, gid int, bit os.FileMode) bool {
	perm := mode.Perm()
	if uid == 0 {
		return bit != 0o1 || mode.IsDir() || perm&0o111 != 0
	}
	switch {
	case ownerUID == uid:
		return perm&(bit<<6) != 0
	case ownerGID == gid:
		return perm&(bit<<3) != 0
	default:
		return perm&bit != 0
	}
}
