package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/upload"
)

// fakeUploadLimit is the fake gateway's limit per file.
const fakeUploadLimit = 1 << 20

// RunJobWithUploads plays the gateway and isolator: it checks the stream
// as the isolator does (manifest first, chunks in manifest order, no more
// than declared, the limit per file), then "runs" a job whose output lists
// what arrived, one "path mode size sha256 chunks" line per entry.
func (f *fakeJobs) RunJobWithUploads(st grpc.ClientStreamingServer[jobletv1.RunJobUploadRequest, jobletv1.RunJobResponse]) error {
	if err := adminOnly(st.Context(), "RunJobWithUploads"); err != nil {
		return err
	}
	first, err := st.Recv()
	if err != nil {
		return err
	}
	m := first.GetManifest()
	if m == nil {
		return status.Error(codes.InvalidArgument, "upload stream must start with a manifest")
	}
	entries := m.GetEntries()
	for _, e := range entries {
		if e.GetSize() > fakeUploadLimit {
			return status.Errorf(codes.ResourceExhausted, "upload %q is %d bytes; the limit per file is %d", e.GetPath(), e.GetSize(), fakeUploadLimit)
		}
	}
	sums := make([]hash.Hash, len(entries))
	for i := range entries {
		sums[i] = sha256.New()
	}
	got := make([]int64, len(entries))
	chunks := make([]int, len(entries))
	last := 0
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		c := req.GetChunk()
		i := int(c.GetIndex())
		switch {
		case c == nil || i >= len(entries) || i < last:
			return status.Error(codes.InvalidArgument, "chunk out of order")
		case len(c.GetData()) > upload.ChunkSize:
			return status.Errorf(codes.InvalidArgument, "chunk of %d bytes", len(c.GetData()))
		case got[i]+int64(len(c.GetData())) > entries[i].GetSize():
			return status.Errorf(codes.InvalidArgument, "more bytes than declared for %q", entries[i].GetPath())
		}
		last = i
		got[i] += int64(len(c.GetData()))
		chunks[i]++
		sums[i].Write(c.GetData())
	}
	var lines []string
	for i, e := range entries {
		if got[i] != e.GetSize() {
			return status.Errorf(codes.InvalidArgument, "%q is short", e.GetPath())
		}
		kind := ""
		if e.GetDir() {
			kind = "/"
		}
		lines = append(lines, fmt.Sprintf("%s%s %o %d %s %d", e.GetPath(), kind, e.GetMode(), got[i], hex.EncodeToString(sums[i].Sum(nil))[:12], chunks[i]))
	}
	spec := m.GetSpec()
	r, err := f.RunJob(st.Context(), &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{
		Command: "echo", Args: []string{strings.Join(lines, "\n")}, Schedule: spec.GetSchedule(),
	}})
	if err != nil {
		return err
	}
	return st.SendAndClose(r)
}

func sha12(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])[:12]
}

func TestRunUploadsFilesAndDirs(t *testing.T) {
	s := newSuite(t)
	proj := filepath.Join(s.dir, "proj")
	big := make([]byte, 3*upload.ChunkSize+5)
	for i := range big {
		big[i] = byte(i * 7)
	}
	mustWrite(t, filepath.Join(proj, "data", "big.bin"), big, 0o644)
	mustWrite(t, filepath.Join(proj, "empty"), nil, 0o600)
	mustWrite(t, filepath.Join(s.dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	if err := os.MkdirAll(filepath.Join(proj, "hollow"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(proj, "hollow"), 0o700); err != nil {
		t.Fatal(err)
	}

	r := s.rnx(t, "run", "--upload=run.sh", "--upload-dir", "proj", "sh", "run.sh")
	want := strings.Join([]string{
		"run.sh 755 10 " + sha12([]byte("#!/bin/sh\n")) + " 1",
		"proj/ 755 0 " + sha12(nil) + " 0",
		"proj/data/ 755 0 " + sha12(nil) + " 0",
		"proj/data/big.bin 644 786437 " + sha12(big) + " 4",
		"proj/empty 600 0 " + sha12(nil) + " 0",
		"proj/hollow/ 700 0 " + sha12(nil) + " 0",
	}, "\n") + "\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("got %+v\nwant stdout:\n%s", r, want)
	}
	if !strings.HasPrefix(r.stderr, "Files: 3 uploaded (786.4 kB)\nID: 1\n") {
		t.Fatalf("stderr %q: want the summary, then the header", r.stderr)
	}
}

func TestRunUploadDirDot(t *testing.T) {
	s := newSuite(t)
	cwd := filepath.Join(s.dir, "here")
	mustWrite(t, filepath.Join(cwd, "a.txt"), []byte("a"), 0o644)
	mustWrite(t, filepath.Join(cwd, "sub", "b.txt"), []byte("bb"), 0o640)
	r := s.rnxWith(t, func(e *Env) { e.Dir = cwd }, "run", "-d", "--upload-dir=.", "true")
	if r.code != 0 {
		t.Fatalf("got %+v", r)
	}
	spec := s.fake.specs[0]
	want := "a.txt 644 1 " + sha12([]byte("a")) + " 1\nsub/ 755 0 " + sha12(nil) + " 0\nsub/b.txt 640 2 " + sha12([]byte("bb")) + " 1"
	if spec.GetArgs()[0] != want {
		t.Fatalf("uploaded:\n%s\nwant:\n%s", spec.GetArgs()[0], want)
	}
}

func TestRunUploadErrors(t *testing.T) {
	s := newSuite(t)
	mustWrite(t, filepath.Join(s.dir, "huge"), make([]byte, fakeUploadLimit+1), 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(s.dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"run", "--upload=huge", "true"}, fmt.Sprintf("rnx: upload \"huge\" is %d bytes; the limit per file is %d\n", fakeUploadLimit+1, fakeUploadLimit)},
		{[]string{"run", "--upload=link", "true"}, "rnx: upload: " + filepath.Join(s.dir, "link") + " is a symbolic link; only regular files and directories can be uploaded\n"},
		{[]string{"run", "--upload=nope", "true"}, "rnx: upload: " + filepath.Join(s.dir, "nope") + " does not exist\n"},
		{[]string{"--node", "viewer", "run", "--upload=huge", "true"}, "rnx: permission denied: role viewer may not call RunJobWithUploads\n"},
	} {
		r := s.rnx(t, tc.args...)
		if r.code != 1 || r.stderr != tc.stderr {
			t.Errorf("rnx %q: got %+v\nwant code 1 and stderr %q", tc.args, r, tc.stderr)
		}
	}
	if len(s.fake.specs) != 0 {
		t.Errorf("a refused upload ran a job: %v", s.fake.specs)
	}
}

func mustWrite(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
