package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Uploads (issue 6), through bin/rnx against the running suite. The
// isolator receives uploads in <state>/isolator/uploads and keeps each
// job's workspace in <state>/isolator/work/<id> (isolator/README.md).

const mib = 1 << 20

func isolatorState(dir string) string {
	return filepath.Join(theSuite.devDir, "state", "isolator", dir)
}

// names lists a directory, or nothing when it does not exist.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// nothingLeft checks that no upload is in progress and no workspace exists
// that was not there before (workspaces of jobs still running).
func nothingLeft(t *testing.T, before []string) {
	t.Helper()
	if left := names(t, isolatorState("uploads")); len(left) != 0 {
		t.Errorf("uploads left behind: %v", left)
	}
	for _, w := range names(t, isolatorState("work")) {
		if !slices.Contains(before, w) {
			t.Errorf("workspace %s left behind", w)
		}
	}
}

// writeFile writes data (or, when data is nil, size random bytes) to p
// with mode, making its directory, and returns its sha256.
func writeFile(t *testing.T, p string, data []byte, size int, mode os.FileMode) string {
	t.Helper()
	if data == nil {
		data = make([]byte, size)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// sparseFile makes a file of size zero bytes without writing them.
func sparseFile(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// rnxIn runs bin/rnx with the admin config in dir.
func rnxIn(t *testing.T, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rnxTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(theSuite.binDir, "rnx"), args...)
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+theSuite.adminConfig(), clientMarker+"=leak")
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	r := runCmd(t, ctx, cmd, args)
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

func uploadTempDir(t *testing.T) string {
	t.Helper()
	if theSuite == nil {
		t.Skip(skipReason)
	}
	d, err := os.MkdirTemp("/tmp", "joblet-e2e-upload-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// dirSizes matches the stat lines of directories, whose sizes depend on
// the filesystem.
var dirSizes = regexp.MustCompile(`(?m)^((?:a|a/b|bin|hollow) \d+) \d+$`)

func TestUploadTree(t *testing.T) {
	tmp := uploadTempDir(t)
	proj := filepath.Join(tmp, "proj")
	sums := map[string]string{
		"a/b/deep.txt": writeFile(t, filepath.Join(proj, "a", "b", "deep.txt"), []byte("deep\n"), 0, 0o640),
		"empty":        writeFile(t, filepath.Join(proj, "empty"), []byte{}, 0, 0o600),
		"run.sh":       writeFile(t, filepath.Join(proj, "run.sh"), []byte("#!/bin/sh\necho script ran\n"), 0, 0o750),
		"bin/blob":     writeFile(t, filepath.Join(proj, "bin", "blob"), nil, 30*mib, 0o644),
	}
	if err := os.MkdirAll(filepath.Join(proj, "hollow"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(proj, "hollow"), 0o700); err != nil {
		t.Fatal(err)
	}
	script := `cd /work/proj && ./run.sh && sha256sum a/b/deep.txt bin/blob empty run.sh && ` +
		`stat -c '%n %a %s' a a/b a/b/deep.txt bin bin/blob empty hollow run.sh && ls -A hollow | wc -l`
	_, r := mustRun(t, "--upload-dir="+proj, "sh", "-c", script)
	var want strings.Builder
	want.WriteString("script ran\n")
	for _, f := range []string{"a/b/deep.txt", "bin/blob", "empty", "run.sh"} {
		fmt.Fprintf(&want, "%s  %s\n", sums[f], f)
	}
	want.WriteString("a 755 \na/b 755 \na/b/deep.txt 640 5\nbin 755 \nbin/blob 644 31457280\nempty 600 0\nhollow 700 \nrun.sh 750 26\n0\n")
	// Directory sizes depend on the filesystem: compare without them.
	got := dirSizes.ReplaceAllString(r.stdout, "$1 ")
	if got != want.String() {
		t.Fatalf("inside the job:\n%s\nwant:\n%s", got, want.String())
	}
	if !strings.HasPrefix(r.stderr, "Files: 4 uploaded (31.5 MB)\n") {
		t.Errorf("stderr %q: want the upload summary first", r.stderr)
	}
}

func TestUploadDirDot(t *testing.T) {
	tmp := uploadTempDir(t)
	writeFile(t, filepath.Join(tmp, "top.txt"), []byte("top\n"), 0, 0o644)
	writeFile(t, filepath.Join(tmp, "sub", "inner.txt"), []byte("inner\n"), 0, 0o644)
	extra := uploadTempDir(t)
	writeFile(t, filepath.Join(extra, "single.txt"), []byte("single\n"), 0, 0o644)
	r := rnxIn(t, tmp, "run", "--upload-dir=.", "--upload", filepath.Join(extra, "single.txt"),
		"sh", "-c", "cat /work/top.txt /work/sub/inner.txt /work/single.txt; ls /work")
	want := "top\ninner\nsingle\nsingle.txt\nsub\ntop.txt\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("got %v, want stdout %q", r, want)
	}
}

// 90 MB of files reach a job that may use 64 MB of memory: nothing holds
// a whole file in memory, and the job's memory is not charged for them.
func TestUploadWithMaxMemory(t *testing.T) {
	tmp := uploadTempDir(t)
	a := writeFile(t, filepath.Join(tmp, "a.bin"), nil, 45*mib, 0o644)
	b := writeFile(t, filepath.Join(tmp, "b.bin"), nil, 45*mib, 0o644)
	_, r := mustRun(t, "--max-memory=64", "--upload="+filepath.Join(tmp, "a.bin"), "--upload="+filepath.Join(tmp, "b.bin"),
		"sh", "-c", "cd /work && sha256sum a.bin b.bin")
	want := a + "  a.bin\n" + b + "  b.bin\n"
	if r.stdout != want {
		t.Fatalf("got %v, want stdout %q", r, want)
	}
}

// The default limits (50 MiB per file, 100 MiB per job) at N and N+1.
func TestUploadLimits(t *testing.T) {
	tmp := uploadTempDir(t)
	before := names(t, isolatorState("work"))
	sparseFile(t, filepath.Join(tmp, "at"), 50*mib)
	sparseFile(t, filepath.Join(tmp, "over"), 50*mib+1)
	sparseFile(t, filepath.Join(tmp, "at2"), 50*mib)
	sparseFile(t, filepath.Join(tmp, "one"), 1)
	marker := fmt.Sprintf("refused-upload-%d", time.Now().UnixNano())

	_, r := mustRun(t, "--upload="+filepath.Join(tmp, "at"), "--upload="+filepath.Join(tmp, "at2"), "stat", "-c", "%s", "/work/at", "/work/at2")
	if r.stdout != "52428800\n52428800\n" {
		t.Fatalf("50 MiB + 50 MiB: %v", r)
	}
	for name, tc := range map[string]struct {
		files []string
		msg   string
	}{
		"per file": {[]string{"over"}, `upload "over" is 52428801 bytes; the limit per file is 52428800 (50 MiB)`},
		"per job":  {[]string{"at", "at2", "one"}, `upload "one" brings the total to 104857601 bytes; the limit per job is 104857600 (100 MiB)`},
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"run"}
			for _, f := range tc.files {
				args = append(args, "--upload="+filepath.Join(tmp, f))
			}
			r := rnx(t, append(args, "echo", marker)...)
			if r.code == 0 || r.stderr != "rnx: "+tc.msg+"\n" {
				t.Fatalf("got %v, want a failure with %q", r, tc.msg)
			}
			nothingLeft(t, before)
		})
	}
	if l := rnx(t, "list"); strings.Contains(l.stdout, marker) {
		t.Fatalf("a refused upload made a job:\n%s", l.stdout)
	}
}

// A client killed mid-upload leaves no upload, workspace or job behind.
func TestUploadClientKilled(t *testing.T) {
	tmp := uploadTempDir(t)
	before := names(t, isolatorState("work"))
	for _, f := range []string{"a", "b"} {
		writeFile(t, filepath.Join(tmp, f), nil, 45*mib, 0o644)
	}
	marker := fmt.Sprintf("killed-upload-%d", time.Now().UnixNano())
	cmd := exec.Command(filepath.Join(theSuite.binDir, "rnx"), "run", "--upload="+filepath.Join(tmp, "a"),
		"--upload="+filepath.Join(tmp, "b"), "echo", marker)
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+theSuite.adminConfig())
	// Slow enough to be caught mid-stream: rnx's stderr is a pipe nobody
	// reads until it is killed, which does not slow the upload, so the test
	// watches the isolator's upload directory instead.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if received(isolatorState("uploads")) > 0 {
			killed = cmd.Process.Kill() == nil
			break
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatal("never saw the upload in progress")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if len(names(t, isolatorState("uploads"))) == 0 || time.Now().After(deadline) {
			break
		}
	}
	nothingLeft(t, before)
	if l := rnx(t, "list"); strings.Contains(l.stdout, marker) {
		t.Fatalf("the killed upload made a job:\n%s", l.stdout)
	}
}

// received is how many bytes of files are in the upload directory.
func received(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// A scheduled job's files are written when it is submitted and are there
// when it runs.
func TestUploadScheduled(t *testing.T) {
	tmp := uploadTempDir(t)
	sum := writeFile(t, filepath.Join(tmp, "later.bin"), nil, 3*mib, 0o644)
	r := rnx(t, "run", fmt.Sprintf("--schedule=%ds", 3*raceFactor()), "--upload="+filepath.Join(tmp, "later.bin"), "sha256sum", "/work/later.bin")
	if r.code != 0 {
		t.Fatalf("scheduled upload: %v", r)
	}
	id := headerID(t, r.stdout)
	if _, err := os.Stat(filepath.Join(isolatorState("work"), id, "later.bin")); err != nil {
		t.Fatalf("the scheduled job's upload is not in its workspace: %v", err)
	}
	waitStatus(t, id, "COMPLETED", scaled(20*time.Second))
	l := rnx(t, "log", id)
	if l.stdout != sum+"  /work/later.bin\n" {
		t.Fatalf("log: %v", l)
	}
	if _, err := os.Stat(filepath.Join(isolatorState("work"), id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("workspace of the ended job: %v", err)
	}
}
