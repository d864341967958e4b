// Package workspace writes a job's uploaded files into its workspace
// directory (the job's /work) safely: a manifest of paths is checked before
// anything is written, and every write goes through an os.Root so no path,
// symlink or hardlink can reach outside the workspace.
package workspace

import "fmt"

// Sizes in bytes.
const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// Limits bound one job's upload. A zero or negative field means its default.
type Limits struct {
	MaxFileBytes  int64 // bytes per file; default 50 MiB
	MaxTotalBytes int64 // bytes for all files together; default 100 MiB
	MaxFiles      int   // entries (files and directories); default 10000
	MaxDepth      int   // path elements; default 32
	MaxPathLen    int   // bytes in a path; default 4096
	MaxNameLen    int   // bytes in one path element; default 255
}

// DefaultLimits returns the limits used for every zero field of a Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxFileBytes:  50 * MiB,
		MaxTotalBytes: 100 * MiB,
		MaxFiles:      10000,
		MaxDepth:      32,
		MaxPathLen:    4096,
		MaxNameLen:    255,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxPathLen <= 0 {
		l.MaxPathLen = d.MaxPathLen
	}
	if l.MaxNameLen <= 0 {
		l.MaxNameLen = d.MaxNameLen
	}
	return l
}

// Entry is one file or directory of an upload, as the client declared it.
type Entry struct {
	// Path is relative to the workspace, slash-separated and clean
	// ("data/in.csv"), exactly as the client sent it.
	Path string
	// Mode is the Unix st_mode: permission bits (0o777, plus setuid, setgid
	// and sticky, which are dropped) and optionally the file type bits,
	// which must then say regular file or directory.
	Mode uint32
	// Dir marks a directory; a directory has Size 0.
	Dir bool
	// Size is the number of bytes the client will send for a file.
	Size int64
}

// sizeString shows a byte count with its binary unit when it has a round one:
// "52428800 (50 MiB)".
func sizeString(n int64) string {
	switch {
	case n > 0 && n%MiB == 0:
		return fmt.Sprintf("%d (%d MiB)", n, n/MiB)
	case n > 0 && n%KiB == 0:
		return fmt.Sprintf("%d (%d KiB)", n, n/KiB)
	}
	return fmt.Sprintf("%d", n)
}

// quote quotes a path for an error message, shortened so a hostile path
// cannot make the message huge; %q also escapes control characters.
func quote(p string) string {
	const max = 64
	if len(p) > max {
		return fmt.Sprintf("%q...", p[:max])
	}
	return fmt.Sprintf("%q", p)
}
