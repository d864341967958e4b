package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

func TestErrorsCrossThePipe(t *testing.T) {
	spec := &Spec{ID: "7", Args: []string{"foo"}}
	setup := fmt.Errorf("build: %w", setupErr("mount proc on /r/proc", unix.EPERM))
	err := decodeError(spec, errorMessage(setup))
	var ie *InitError
	if !errors.As(err, &ie) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("got %T %v, want an *InitError wrapping EPERM", err, err)
	}
	if want := "sandbox for job 7: mount proc on /r/proc: operation not permitted"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}

	notFound := &stepError{class: classNotFound, step: "look up foo", err: os.ErrNotExist}
	err = decodeError(spec, errorMessage(notFound))
	if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != "command not found: foo" {
		t.Errorf("not found: got %v", err)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	plain := filepath.Join(dir, "data")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"tool", "/nonexistent:" + dir, exe},
		{"data", dir, ""},          // not executable
		{"tool", "relative", ""},   // relative entries are skipped
		{exe, "", exe},             // a path is taken as is
		{dir + "/missing", "", ""}, // and must exist
	}
	for _, tt := range tests {
		got, err := lookPath(tt.name, tt.path)
		var se *stepError
		if tt.want == "" && (!errors.As(err, &se) || se.class != classNotFound) {
			t.Errorf("lookPath(%q, %q) = %q, %v; want not found", tt.name, tt.path, got, err)
		}
		if tt.want != "" && (err != nil || got != tt.want) {
			t.Errorf("lookPath(%q, %q) = %q, %v; want %q", tt.name, tt.path, got, err, tt.want)
		}
	}
	if got := pathOf([]string{"PATH=/a", "X=1", "PATH=/b"}); got != "/b" {
		t.Errorf("pathOf: got %q, want the last PATH", got)
	}
	if got := pathOf(nil); got != defaultPath {
		t.Errorf("pathOf(nil) = %q, want the default", got)
	}
}

func TestValidHostname(t *testing.T) {
	for h, want := range map[string]bool{
		"job-7": true, "a.b": true, "": false, "-x": false, "a b": false, "a/b": false,
		string(make([]byte, 65)): false,
	} {
		if got := validHostname(h); got != want {
			t.Errorf("validHostname(%q) = %v, want %v", h, got, want)
		}
	}
}

// TestChildReports: the steps of the command's child name their failures
// as confineThread and installSeccomp do, and an execve failure is the
// command's (classExec), not the sandbox's.
func TestChildReports(t *testing.T) {
	for _, tt := range []struct {
		r           childReport
		class, want string
	}{
		{childReport{childExec, 0, uint32(unix.EACCES)}, classExec, "exec /work/x: permission denied"},
		{childReport{childDropBound, 38, uint32(unix.EPERM)}, classSetup, "drop capability 38 from the bounding set: operation not permitted"},
		{childReport{childSeccomp, 0, uint32(unix.EINVAL)}, classSetup, "install seccomp filter: seccomp: invalid argument"},
		{childReport{childCapset, 0, uint32(unix.EPERM)}, classSetup, "set capabilities: operation not permitted"},
		{childReport{childMaps, 0, uint32(unix.EINVAL)}, classSetup, "wait for the user namespace's maps: invalid argument"},
		{childReport{childStdio, 5, uint32(unix.EBADF)}, classSetup, "make descriptor 5 the command's stdio: bad file descriptor"},
	} {
		err := tt.r.err("/work/x")
		var se *stepError
		if !errors.As(err, &se) || se.class != tt.class || err.Error() != tt.want || !errors.Is(err, unix.Errno(tt.r[2])) {
			t.Errorf("%v: got %v, want %s %q wrapping errno %d", tt.r, err, tt.class, tt.want, tt.r[2])
		}
	}
}
