package workspace

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// small limits keep the boundary cases short.
var small = Limits{MaxFileBytes: 10, MaxTotalBytes: 15, MaxFiles: 4, MaxDepth: 3, MaxPathLen: 20, MaxNameLen: 8}

func file(p string, size int64) Entry { return Entry{Path: p, Mode: 0o644, Size: size} }
func dirEntry(p string) Entry         { return Entry{Path: p, Mode: 0o755, Dir: true} }

func TestValidateManifest(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		limits  Limits
		kind    error // nil: accepted
		msg     string
	}{
		{name: "ok", entries: []Entry{dirEntry("d"), file("d/a", 10), file("b", 5), {Path: "e", Mode: 0o100755}}, limits: small},
		{name: "ok types", entries: []Entry{{Path: "d", Mode: 0o40755, Dir: true}, {Path: "f", Mode: 0o100644}}, limits: small},
		{name: "setuid setgid sticky kept for stripping", entries: []Entry{{Path: "f", Mode: 0o7777}, {Path: "d", Mode: 0o41777, Dir: true}}, limits: small},
		{name: "nothing", entries: nil, limits: small},
		{name: "ok at limits", entries: []Entry{file("a/b/c", 10), file("abcdefgh", 5), file("a1234567/b/c123456", 0)}, limits: small},
		{name: "implied parent after file", entries: []Entry{file("a/b", 0), dirEntry("a")}, limits: small},

		{name: "empty", entries: []Entry{file("", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path is empty`},
		{name: "nul", entries: []Entry{file("a\x00b", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a\x00b" contains a NUL byte`},
		{name: "newline", entries: []Entry{file("a\nb", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a\nb" contains a control character`},
		{name: "escape", entries: []Entry{file("a\x1b[2J", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a\x1b[2J" contains a control character`},
		{name: "c1 control", entries: []Entry{file("a\u009bb", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a\u009bb" contains a control character`},
		{name: "invalid utf8", entries: []Entry{file("a\xffb", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a\xffb" is not valid UTF-8`},
		{name: "absolute", entries: []Entry{file("/etc/passwd", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "/etc/passwd" is absolute; paths are relative to the workspace`},
		{name: "root", entries: []Entry{dirEntry("/")}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "/" is absolute; paths are relative to the workspace`},
		{name: "dotdot", entries: []Entry{file("..", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path ".." contains ".."`},
		{name: "dotdot first", entries: []Entry{file("../x", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "../x" contains ".."`},
		{name: "dotdot inner", entries: []Entry{file("a/../b", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a/../b" contains ".."`},
		{name: "dotdot last", entries: []Entry{dirEntry("a/..")}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a/.." contains ".."`},
		{name: "dot", entries: []Entry{dirEntry(".")}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "." names the workspace itself`},
		{name: "dot slash", entries: []Entry{file("./a", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "./a" is not clean (want "a")`},
		{name: "inner dot", entries: []Entry{file("a/./b", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a/./b" is not clean (want "a/b")`},
		{name: "double slash", entries: []Entry{file("a//b", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a//b" is not clean (want "a/b")`},
		{name: "trailing slash", entries: []Entry{dirEntry("a/")}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a/" is not clean (want "a")`},
		{name: "path too long", entries: []Entry{file("a1234567/b1234567/c1", 0), file("a1234567/b1234567/c12", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a1234567/b1234567/c12" is 21 bytes long; the limit is 20`},
		{name: "name too long", entries: []Entry{file("a/123456789", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a/123456789" has a name of 9 bytes; the limit is 8`},
		{name: "too deep", entries: []Entry{file("a/b/c/d", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a/b/c/d" is 4 levels deep; the limit is 3`},
		{name: "long path quoted short", entries: []Entry{file(strings.Repeat("x", 4097), 0)}, kind: errdefs.ErrInvalidArgument, msg: `upload path "` + strings.Repeat("x", 64) + `"... is 4097 bytes long; the limit is 4096`},
		{name: "default name limit", entries: []Entry{file(strings.Repeat("n", 256), 0)}, kind: errdefs.ErrInvalidArgument, msg: `upload path "` + strings.Repeat("n", 64) + `"... has a name of 256 bytes; the limit is 255`},
		{name: "duplicate", entries: []Entry{file("a", 0), file("a", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a" is listed twice`},
		{name: "duplicate dir and file", entries: []Entry{dirEntry("a"), file("a", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a" is listed twice`},
		{name: "under a file", entries: []Entry{file("a", 0), file("a/b", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a/b" is inside "a", which is a file`},
		{name: "under a file declared later", entries: []Entry{dirEntry("a/b/c"), file("a", 0)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload path "a/b/c" is inside "a", which is a file`},
		{name: "symlink", entries: []Entry{{Path: "l", Mode: 0o120777}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "l" has mode 0120777, a symlink; only regular files and directories can be uploaded`},
		{name: "char device", entries: []Entry{{Path: "null", Mode: 0o20666}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "null" has mode 020666, a character device; only regular files and directories can be uploaded`},
		{name: "block device", entries: []Entry{{Path: "sda", Mode: 0o60660}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "sda" has mode 060660, a block device; only regular files and directories can be uploaded`},
		{name: "fifo", entries: []Entry{{Path: "p", Mode: 0o10644}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "p" has mode 010644, a FIFO; only regular files and directories can be uploaded`},
		{name: "socket", entries: []Entry{{Path: "s", Mode: 0o140755}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "s" has mode 0140755, a socket; only regular files and directories can be uploaded`},
		{name: "unknown type", entries: []Entry{{Path: "u", Mode: 0o30644}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "u" has mode 030644, an unknown file type; only regular files and directories can be uploaded`},
		{name: "file marked dir", entries: []Entry{{Path: "f", Mode: 0o40755}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "f" has mode 040755, which is not a regular file`},
		{name: "dir marked file", entries: []Entry{{Path: "d", Mode: 0o100755, Dir: true}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "d" has mode 0100755, which is not a directory`},
		{name: "go file mode bits", entries: []Entry{{Path: "d", Mode: 1<<31 | 0o755, Dir: true}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "d" has mode 020000000755, which is not a Unix file mode`},
		{name: "negative size", entries: []Entry{file("f", -1)}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload "f" has a negative size`},
		{name: "dir with size", entries: []Entry{{Path: "d", Mode: 0o755, Dir: true, Size: 1}}, limits: small, kind: errdefs.ErrInvalidArgument, msg: `upload directory "d" has a size`},
		{name: "file over limit", entries: []Entry{file("f", 11)}, limits: small, kind: errdefs.ErrResourceExhausted, msg: `upload "f" is 11 bytes; the limit per file is 10`},
		{name: "file over default limit", entries: []Entry{file("data/big.bin", 50*MiB+1)}, kind: errdefs.ErrResourceExhausted, msg: `upload "data/big.bin" is 52428801 bytes; the limit per file is 52428800 (50 MiB)`},
		{name: "total over limit", entries: []Entry{file("a", 10), file("b", 6)}, limits: small, kind: errdefs.ErrResourceExhausted, msg: `upload "b" brings the total to 16 bytes; the limit per job is 15`},
		{name: "total over default limit", entries: []Entry{file("a", 50*MiB), file("b", 50*MiB), file("c", 1)}, kind: errdefs.ErrResourceExhausted, msg: `upload "c" brings the total to 104857601 bytes; the limit per job is 104857600 (100 MiB)`},
		{name: "total over KiB limit", entries: []Entry{file("a", 2049)}, limits: Limits{MaxTotalBytes: 2 * KiB}, kind: errdefs.ErrResourceExhausted, msg: `upload "a" brings the total to 2049 bytes; the limit per job is 2048 (2 KiB)`},
		{name: "too many entries", entries: []Entry{dirEntry("a"), file("b", 0), file("c", 0), file("d", 0), file("e", 0)}, limits: small, kind: errdefs.ErrResourceExhausted, msg: `upload has 5 files and directories; the limit is 4`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateManifest(tt.entries, tt.limits)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %q", tt.msg)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("kind of %q is not %v", err, tt.kind)
			}
			if err.Error() != tt.msg {
				t.Errorf("message\n got %s\nwant %s", err, tt.msg)
			}
		})
	}
}

func TestDefaultsFillZeroLimits(t *testing.T) {
	if got := (Limits{MaxFiles: 3}).withDefaults(); got.MaxFiles != 3 || got.MaxFileBytes != 50*MiB || got.MaxTotalBytes != 100*MiB ||
		got.MaxDepth != 32 || got.MaxPathLen != 4096 || got.MaxNameLen != 255 {
		t.Fatalf("got %+v", got)
	}
}

// FuzzValidatePath checks that ValidatePath never panics and never accepts
// a path that leaves the workspace or is not in its one canonical form.
func FuzzValidatePath(f *testing.F) {
	for _, p := range []string{"a", "a/b", "../a", "a/..", "/a", ".", "./a", "a//b", "a\x00", "a/./b", "...", "..a", "a/b/../../..", `..\a`, "a/\u202e", "\xff"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p, Limits{}) != nil {
			return
		}
		if !filepath.IsLocal(p) || p == "." || filepath.Clean(p) != p {
			t.Fatalf("accepted %q, which is not local and clean", p)
		}
		const ws = "/work/ws"
		if joined := filepath.Join(ws, p); !strings.HasPrefix(joined, ws+"/") || joined != ws+"/"+p {
			t.Fatalf("accepted %q, which resolves to %q", p, joined)
		}
		for _, name := range strings.Split(p, "/") {
			if name == "" || name == "." || name == ".." || strings.ContainsRune(name, 0) {
				t.Fatalf("accepted %q with name %q", p, name)
			}
		}
	})
}
