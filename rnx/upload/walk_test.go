package upload

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// tree makes, under a temporary directory, a project with nested
// directories, an empty file, an empty directory and an executable, and
// returns the directory.
func tree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "proj")
	for _, d := range []string{"proj/src/pkg", "proj/empty"} {
		if err := os.MkdirAll(filepath.Join(filepath.Dir(root), d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, data string, mode os.FileMode) {
		f := filepath.Join(root, p)
		if err := os.WriteFile(f, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	write("run.sh", "#!/bin/sh\necho hi\n", 0o755|os.ModeSetuid)
	write("src/main.go", "package main\n", 0o640)
	write("src/pkg/nothing", "", 0o600)
	if err := os.Chmod(filepath.Join(root, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	return root
}

// describe lists a plan's entries as "path mode size" ("/" after a dir).
func describe(p *Plan) string {
	var b strings.Builder
	for _, e := range p.Entries {
		kind := ""
		if e.Dir {
			kind = "/"
		}
		b.WriteString(e.Path + kind + " " + modeString(e.Mode) + " " + itoa(e.Size) + "\n")
	}
	return b.String()
}

func modeString(m uint32) string { return "0" + strconv.FormatInt(int64(m), 8) }
func itoa(n int64) string        { return strconv.FormatInt(n, 10) }

func TestBuildDir(t *testing.T) {
	root := tree(t)
	p, err := Build("/nonexistent", nil, []string{root})
	if err != nil {
		t.Fatal(err)
	}
	want := `proj/ 0755 0
proj/empty/ 0700 0
proj/run.sh 0755 18
proj/src/ 0755 0
proj/src/main.go 0640 13
proj/src/pkg/ 0755 0
proj/src/pkg/nothing 0600 0
`
	if got := describe(p); got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if p.Files != 3 || p.Bytes != 31 {
		t.Fatalf("files %d bytes %d, want 3 and 31", p.Files, p.Bytes)
	}
	m := p.Manifest()
	if len(m) != 7 || m[2].GetPath() != "proj/run.sh" || m[2].GetMode() != 0o755 || m[2].GetSize() != 18 || !m[0].GetDir() {
		t.Fatalf("manifest: %v", m)
	}
}

// "." uploads the contents of the current directory straight into /work;
// any other spelling of a directory keeps its name.
func TestBuildDot(t *testing.T) {
	root := tree(t)
	p, err := Build(root, []string{"run.sh"}, []string{"."})
	if err == nil {
		t.Fatalf("run.sh twice was accepted: %s", describe(p))
	}
	if !strings.Contains(err.Error(), "would both be /work/run.sh") {
		t.Fatalf("error: %v", err)
	}
	p, err = Build(root, nil, []string{"./"})
	if err != nil {
		t.Fatal(err)
	}
	want := `empty/ 0700 0
run.sh 0755 18
src/ 0755 0
src/main.go 0640 13
src/pkg/ 0755 0
src/pkg/nothing 0600 0
`
	if got := describe(p); got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	p, err = Build(filepath.Join(root, "src"), []string{"main.go"}, []string{"pkg", "../empty"})
	if err != nil {
		t.Fatal(err)
	}
	want = `main.go 0640 13
pkg/ 0755 0
pkg/nothing 0600 0
empty/ 0700 0
`
	if got := describe(p); got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
}

func TestBuildRefuses(t *testing.T) {
	root := tree(t)
	link := filepath.Join(root, "src", "link")
	if err := os.Symlink("/etc/passwd", link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		files, dirs []string
		msg         string
	}{
		"symlink in a dir": {dirs: []string{root}, msg: link + " is a symbolic link"},
		"symlink named":    {files: []string{link}, msg: link + " is a symbolic link"},
		"fifo":             {files: []string{fifo}, msg: fifo + " is a FIFO"},
		"device":           {files: []string{"/dev/null"}, msg: "/dev/null is a character device"},
		"missing":          {files: []string{filepath.Join(root, "nope")}, msg: "nope does not exist"},
		"dir as a file":    {files: []string{root}, msg: "is a directory; use --upload-dir"},
		"file as a dir":    {dirs: []string{filepath.Join(root, "run.sh")}, msg: "is not a directory; use --upload"},
		"root":             {dirs: []string{"/"}, msg: "no name to give it"},
		"same name twice":  {files: []string{filepath.Join(root, "run.sh"), filepath.Join(root, "run.sh")}, msg: "would both be /work/run.sh"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Build(root, tc.files, tc.dirs)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want an error with %q", err, tc.msg)
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 12_345_678: "12.3 MB", 999_960: "1.0 MB", 31_457_280: "31.5 MB", 5e12: "5000.0 GB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
