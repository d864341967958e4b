package logstream

import (
	"bytes"
	"io"
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

func at(off int64, s jobletv1.Stream, data string) *jobletv1.LogChunk {
	return &jobletv1.LogChunk{Stream: s, Data: []byte(data), Offset: off}
}

const (
	out  = jobletv1.Stream_STREAM_STDOUT
	errS = jobletv1.Stream_STREAM_STDERR
)

func TestTrackerResumesWithoutRepeating(t *testing.T) {
	var tr Tracker
	var stdout, stderr bytes.Buffer
	first := &fakeStream{end: io.ErrUnexpectedEOF, chunks: []*jobletv1.LogChunk{
		at(0, out, "one\n"), at(4, errS, "warn\n"), at(9, out, "tw"),
	}}
	if err := Copy(tr.Wrap(first), &stdout, &stderr); err != io.ErrUnexpectedEOF {
		t.Fatalf("first stream: %v", err)
	}
	if !tr.CanResume() {
		t.Fatal("consistent offsets, yet CanResume is false")
	}
	// The server sends everything again, in different chunks.
	second := &fakeStream{end: io.EOF, chunks: []*jobletv1.LogChunk{
		at(0, out, "one\n"), at(4, errS, "warn\n"), at(9, out, "two\n"), at(13, out, "three\n"),
	}}
	if err := Copy(tr.Wrap(second), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "one\ntwo\nthree\n" || stderr.String() != "warn\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
}

func TestTrackerDistrustsBadOffsets(t *testing.T) {
	var tr Tracker
	src := &fakeStream{end: io.EOF, chunks: []*jobletv1.LogChunk{at(0, out, "a"), at(0, out, "b")}}
	if err := Copy(tr.Wrap(src), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if tr.CanResume() {
		t.Error("offsets without meaning, yet CanResume is true")
	}
}
