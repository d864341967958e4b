package jobs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/isolator/workspace"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/schedulerapi"
)

// chunks streams the files of entries in manifest order, data[i] being
// entry i's bytes, in pieces of at most size bytes. After the chunks it
// returns end (io.EOF for a whole upload).
func chunks(entries []*jobletv1.UploadEntry, data map[int][]byte, size int, end error) func() (*jobletv1.UploadChunk, error) {
	var out []*jobletv1.UploadChunk
	for i := range entries {
		d := data[i]
		for len(d) > 0 {
			n := min(size, len(d))
			out = append(out, &jobletv1.UploadChunk{Index: uint32(i), Data: d[:n]})
			d = d[n:]
		}
	}
	return func() (*jobletv1.UploadChunk, error) {
		if len(out) == 0 {
			return nil, end
		}
		c := out[0]
		out = out[1:]
		return c, nil
	}
}

var uploadTree = []*jobletv1.UploadEntry{
	{Path: "data", Mode: 0o750, Dir: true},
	{Path: "data/in.txt", Mode: 0o640, Size: 11},
	{Path: "data/empty", Mode: 0o600},
	{Path: "hollow", Mode: 0o700, Dir: true},
	{Path: "run.sh", Mode: 0o4755, Size: 23}, // setuid is dropped
}

var uploadData = map[int][]byte{1: []byte("hello world"), 4: []byte("#!/bin/sh\necho running\n")}

// uploadsLeft lists what is in the isolator's upload directory.
func (f *fixture) uploadsLeft() []string {
	f.t.Helper()
	names, err := os.ReadDir(uploadsRoot(f.dir))
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		out = append(out, n.Name())
	}
	return out
}

// assertNothingKept checks that a refused or failed upload left no job,
// no upload and no workspace.
func (f *fixture) assertNothingKept() {
	f.t.Helper()
	if jobs, _ := f.reg.List(context.Background()); len(jobs) != 0 {
		f.t.Errorf("jobs recorded: %v", jobs)
	}
	if left := f.uploadsLeft(); len(left) != 0 {
		f.t.Errorf("uploads left: %v", left)
	}
	if ws, _ := os.ReadDir(workRoot(f.dir)); len(ws) != 0 {
		f.t.Errorf("workspaces left: %v", ws)
	}
}

func TestRunWithUploads(t *testing.T) {
	f := newFixture(t, nil)
	spec := &jobletv1.JobSpec{Command: "sh", Args: []string{"-c",
		"cat data/in.txt; echo; ./run.sh; stat -c '%n %a %s' data data/in.txt data/empty hollow run.sh"}}
	j, err := f.reg.RunWithUploads(context.Background(), spec, uploadTree, chunks(uploadTree, uploadData, 4, io.EOF))
	if err != nil {
		t.Fatal(err)
	}
	if j.GetState() != running {
		t.Fatalf("job: %v", j)
	}
	if rec := f.wait(j.GetId()); rec.GetState() != completed {
		t.Fatalf("job ended %v (%s)", rec.GetState(), rec.GetReason())
	}
	want := "hello world\nrunning\ndata 750 "
	got := f.logd.stdoutOf(j.GetId())
	if !strings.HasPrefix(got, want) {
		t.Fatalf("stdout %q, want it to start with %q", got, want)
	}
	for _, line := range []string{"data/in.txt 640 11", "data/empty 600 0", "hollow 700 ", "run.sh 755 23"} {
		if !strings.Contains(got, line) {
			t.Errorf("stdout %q lacks %q", got, line)
		}
	}
	f.assertNoDirs(j.GetId())
	if left := f.uploadsLeft(); len(left) != 0 {
		t.Errorf("uploads left: %v", left)
	}
}

// The limits count the bytes received: at N they pass, at N+1 (declared
// or only sent) the upload fails and nothing of the job is kept.
func TestUploadLimits(t *testing.T) {
	const perFile, total = 10, 15
	limits := func(o *Options) { o.Uploads = workspace.Limits{MaxFileBytes: perFile, MaxTotalBytes: total} }
	spec := &jobletv1.JobSpec{Command: "true"}
	file := func(p string, n int64) *jobletv1.UploadEntry {
		return &jobletv1.UploadEntry{Path: p, Mode: 0o644, Size: n}
	}
	for name, tc := range map[string]struct {
		entries []*jobletv1.UploadEntry
		sent    map[int][]byte
		msg     string // "" for a success
	}{
		"file at the limit": {
			entries: []*jobletv1.UploadEntry{file("a", perFile)},
			sent:    map[int][]byte{0: bytes.Repeat([]byte("x"), perFile)},
		},
		"file over the limit": {
			entries: []*jobletv1.UploadEntry{file("a", perFile+1)},
			msg:     `upload "a" is 11 bytes; the limit per file is 10`,
		},
		"file over the limit, declared under it": {
			entries: []*jobletv1.UploadEntry{file("a", perFile)},
			sent:    map[int][]byte{0: bytes.Repeat([]byte("x"), perFile+1)},
			msg:     `"a"`,
		},
		"total at the limit": {
			entries: []*jobletv1.UploadEntry{file("a", 8), file("b", total-8)},
			sent:    map[int][]byte{0: bytes.Repeat([]byte("x"), 8), 1: bytes.Repeat([]byte("y"), total-8)},
		},
		"total over the limit": {
			entries: []*jobletv1.UploadEntry{file("a", 8), file("b", total-7)},
			msg:     "the limit per job is 15",
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, limits)
			j, err := f.reg.RunWithUploads(context.Background(), spec, tc.entries, chunks(tc.entries, tc.sent, 3, io.EOF))
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if rec := f.wait(j.GetId()); rec.GetState() != completed {
					t.Fatalf("job ended %v (%s)", rec.GetState(), rec.GetReason())
				}
				return
			}
			if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want a resource-exhausted error with %q", err, tc.msg)
			}
			f.assertNothingKept()
		})
	}
}

func TestUploadRefusedBeforeAnyData(t *testing.T) {
	for name, tc := range map[string]struct {
		spec    *jobletv1.JobSpec
		entries []*jobletv1.UploadEntry
		kind    error
		msg     string
	}{
		"bad spec":      {&jobletv1.JobSpec{}, uploadTree, errdefs.ErrInvalidArgument, "command"},
		"path escapes":  {&jobletv1.JobSpec{Command: "true"}, []*jobletv1.UploadEntry{{Path: "../x", Mode: 0o644}}, errdefs.ErrInvalidArgument, `"../x"`},
		"symlink mode":  {&jobletv1.JobSpec{Command: "true"}, []*jobletv1.UploadEntry{{Path: "l", Mode: 0o120777}}, errdefs.ErrInvalidArgument, `"l"`},
		"declared size": {&jobletv1.JobSpec{Command: "true"}, []*jobletv1.UploadEntry{{Path: "big", Mode: 0o644, Size: 50<<20 + 1}}, errdefs.ErrResourceExhausted, "52428801"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			next := func() (*jobletv1.UploadChunk, error) {
				t.Error("a chunk was read")
				return nil, io.EOF
			}
			_, err := f.reg.RunWithUploads(context.Background(), tc.spec, tc.entries, next)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v with %q", err, tc.kind, tc.msg)
			}
			f.assertNothingKept()
		})
	}
}

// A client that goes away mid-upload (the stream fails, its context is
// cancelled) leaves nothing behind, even after its last chunk.
func TestUploadCancelled(t *testing.T) {
	t.Run("mid-stream", func(t *testing.T) {
		f := newFixture(t, nil)
		_, err := f.reg.RunWithUploads(context.Background(), &jobletv1.JobSpec{Command: "true"}, uploadTree,
			chunks(uploadTree, map[int][]byte{1: uploadData[1]}, 4, context.Canceled))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want cancelled", err)
		}
		f.assertNothingKept()
	})
	t.Run("after the last chunk", func(t *testing.T) {
		f := newFixture(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		next := chunks(uploadTree, uploadData, 4, io.EOF)
		_, err := f.reg.RunWithUploads(ctx, &jobletv1.JobSpec{Command: "true"}, uploadTree, func() (*jobletv1.UploadChunk, error) {
			c, err := next()
			if err != nil {
				cancel()
			}
			return c, err
		})
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "upload failed") {
			t.Fatalf("got %v, want an upload failed by cancellation", err)
		}
		f.assertNothingKept()
	})
}

// A job refused after its upload (here: too many running) keeps nothing.
func TestUploadRefusedAfterReceiving(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxRunning = 1 })
	first := f.run("sleep", "10")
	_, err := f.reg.RunWithUploads(context.Background(), &jobletv1.JobSpec{Command: "true"}, uploadTree,
		chunks(uploadTree, uploadData, 4, io.EOF))
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("got %v, want too many running", err)
	}
	if left := f.uploadsLeft(); len(left) != 0 {
		t.Errorf("uploads left: %v", left)
	}
	if ws, _ := os.ReadDir(workRoot(f.dir)); len(ws) != 1 || ws[0].Name() != first.GetId() {
		t.Errorf("workspaces: %v, want only job %s's", ws, first.GetId())
	}
	if _, err := f.reg.Stop(context.Background(), first.GetId()); err != nil {
		t.Fatal(err)
	}
}

// An upload of an earlier isolator, and a workspace no record owns, are
// removed when the registry opens.
func TestUploadLeftoversSweptAtOpen(t *testing.T) {
	f := newFixture(t, nil)
	j := f.run("true")
	f.wait(j.GetId())
	for _, d := range []string{filepath.Join(uploadsRoot(f.dir), "upload-1", "x"), filepath.Join(workRoot(f.dir), "999", "y")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f.open()
	if _, err := f.reg.Get(context.Background(), j.GetId()); err != nil {
		t.Fatalf("a recorded job was lost: %v", err)
	}
	f.assertNoDirs("999")
	if left := f.uploadsLeft(); len(left) != 0 {
		t.Errorf("uploads left: %v", left)
	}
}

// fakeScheduler accepts every job, due in an hour; the test starts it.
type fakeScheduler struct{}

func (fakeScheduler) Schedule(_ context.Context, id, input string) (schedulerapi.Entry, error) {
	return schedulerapi.Entry{JobID: id, Input: input, Due: time.Now().Add(time.Hour)}, nil
}
func (fakeScheduler) Cancel(context.Context, string) (bool, error)       { return true, nil }
func (fakeScheduler) List(context.Context) ([]schedulerapi.Entry, error) { return nil, nil }

// A scheduled job's files are its workspace from submission until it runs,
// across a restart of the isolator; canceling it removes them.
func TestScheduledUploads(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Scheduler = fakeScheduler{} })
	spec := &jobletv1.JobSpec{Command: "sh", Args: []string{"-c", "cat data/in.txt"}, Schedule: "1h"}
	run := func() *jobletv1.Job {
		t.Helper()
		j, err := f.reg.RunWithUploads(context.Background(), spec, uploadTree, chunks(uploadTree, uploadData, 4, io.EOF))
		if err != nil {
			t.Fatal(err)
		}
		if j.GetState() != jobletv1.JobState_JOB_STATE_SCHEDULED {
			t.Fatalf("job: %v", j)
		}
		if _, err := os.Stat(filepath.Join(workRoot(f.dir), j.GetId(), "data", "in.txt")); err != nil {
			t.Fatalf("scheduled job's upload: %v", err)
		}
		return j
	}
	j, canceled := run(), run()
	if left := f.uploadsLeft(); len(left) != 0 {
		t.Errorf("uploads left: %v", left)
	}
	f.open() // a restart keeps scheduled jobs and their workspaces

	if _, err := f.reg.Stop(context.Background(), canceled.GetId()); err != nil {
		t.Fatal(err)
	}
	f.assertNoDirs(canceled.GetId())
	if _, err := f.reg.StartScheduled(context.Background(), j.GetId(), 0); err != nil {
		t.Fatal(err)
	}
	if rec := f.wait(j.GetId()); rec.GetState() != completed {
		t.Fatalf("job ended %v (%s)", rec.GetState(), rec.GetReason())
	}
	if got := f.logd.stdoutOf(j.GetId()); got != "hello world" {
		t.Fatalf("stdout %q", got)
	}
	f.assertNoDirs(j.GetId())
}
