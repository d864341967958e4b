package workspace

import (
	"os"
	"path"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// ValidatePath checks one upload path against the path rules: relative,
// slash-separated, clean, valid UTF-8 without control characters, no "."
// or ".." elements, and within the length and depth limits. An accepted
// path always names something strictly beneath the workspace.
func ValidatePath(p string, l Limits) error {
	l = l.withDefaults()
	switch {
	case p == "":
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path is empty")
	case strings.IndexByte(p, 0) >= 0:
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s contains a NUL byte", quote(p))
	case !utf8.ValidString(p):
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s is not valid UTF-8", quote(p))
	case strings.IndexFunc(p, isControl) >= 0:
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s contains a control character", quote(p))
	case len(p) > l.MaxPathLen:
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s is %d bytes long; the limit is %d", quote(p), len(p), l.MaxPathLen)
	case p[0] == '/':
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s is absolute; paths are relative to the workspace", quote(p))
	}
	names := strings.Split(p, "/")
	for _, name := range names {
		if name == ".." {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s contains \"..\"", quote(p))
		}
	}
	if clean := path.Clean(p); clean != p || clean == "." {
		if clean == "." {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s names the workspace itself", quote(p))
		}
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s is not clean (want %s)", quote(p), quote(clean))
	}
	if len(names) > l.MaxDepth {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s is %d levels deep; the limit is %d", quote(p), len(names), l.MaxDepth)
	}
	for _, name := range names {
		if len(name) > l.MaxNameLen {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s has a name of %d bytes; the limit is %d", quote(p), len(name), l.MaxNameLen)
		}
	}
	return nil
}

// isControl reports C0 and C1 control characters and DEL, which would let a
// file name rewrite a terminal that shows it.
func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

// ValidateManifest checks a whole upload before anything is written: every
// path (see ValidatePath), no duplicates, nothing inside a path declared as a
// file, only regular files and directories, and the sizes and number of
// entries within l. Errors are errdefs.ErrInvalidArgument, or
// errdefs.ErrResourceExhausted for a size or count over a limit; each names
// the entry and the rule.
func ValidateManifest(entries []Entry, l Limits) error {
	l = l.withDefaults()
	if len(entries) > l.MaxFiles {
		return errdefs.Errorf(errdefs.ErrResourceExhausted, "upload has %d files and directories; the limit is %d", len(entries), l.MaxFiles)
	}
	isDir := make(map[string]bool, len(entries))
	var total int64
	for _, e := range entries {
		if err := ValidatePath(e.Path, l); err != nil {
			return err
		}
		if _, dup := isDir[e.Path]; dup {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s is listed twice", quote(e.Path))
		}
		isDir[e.Path] = e.Dir
		if err := checkMode(e); err != nil {
			return err
		}
		switch {
		case e.Dir && e.Size != 0:
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload directory %s has a size", quote(e.Path))
		case e.Size < 0:
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload %s has a negative size", quote(e.Path))
		case e.Size > l.MaxFileBytes:
			return errdefs.Errorf(errdefs.ErrResourceExhausted, "upload %s is %d bytes; the limit per file is %s", quote(e.Path), e.Size, sizeString(l.MaxFileBytes))
		}
		total += e.Size
		if total > l.MaxTotalBytes {
			return errdefs.Errorf(errdefs.ErrResourceExhausted, "upload %s brings the total to %d bytes; the limit per job is %s", quote(e.Path), total, sizeString(l.MaxTotalBytes))
		}
	}
	// Checked once every path is known, so the order of entries does not
	// matter: "a/b" then "a" as a file is refused like "a" then "a/b".
	for _, e := range entries {
		for parent := path.Dir(e.Path); parent != "."; parent = path.Dir(parent) {
			if dir, ok := isDir[parent]; ok && !dir {
				return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %s is inside %s, which is a file", quote(e.Path), quote(parent))
			}
		}
	}
	return nil
}

// checkMode refuses modes with bits beyond a Unix file mode and file types
// other than the entry's own.
func checkMode(e Entry) error {
	if e.Mode&^uint32(syscall.S_IFMT|0o7777) != 0 {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload %s has mode %#o, which is not a Unix file mode", quote(e.Path), e.Mode)
	}
	want := uint32(syscall.S_IFREG)
	if e.Dir {
		want = syscall.S_IFDIR
	}
	switch typ := e.Mode & syscall.S_IFMT; typ {
	case 0, want:
		return nil
	case syscall.S_IFREG, syscall.S_IFDIR:
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload %s has mode %#o, which is not a %s", quote(e.Path), e.Mode, kindName(e.Dir))
	default:
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload %s has mode %#o, %s; only regular files and directories can be uploaded", quote(e.Path), e.Mode, typeName(typ))
	}
}

func kindName(dir bool) string {
	if dir {
		return "directory"
	}
	return "regular file"
}

func typeName(typ uint32) string {
	switch typ {
	case syscall.S_IFLNK:
		return "a symlink"
	case syscall.S_IFCHR:
		return "a character device"
	case syscall.S_IFBLK:
		return "a block device"
	case syscall.S_IFIFO:
		return "a FIFO"
	case syscall.S_IFSOCK:
		return "a socket"
	}
	return "an unknown file type"
}

// permOf is the mode an entry gets on disk: its permission bits only, so
// setuid, setgid and sticky are dropped.
func permOf(e Entry) os.FileMode { return os.FileMode(e.Mode & 0o777) }
