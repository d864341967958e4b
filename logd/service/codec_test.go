package service

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
)

// The codec's hand-built LogChunk must decode to the message it was given,
// for every combination of present and absent fields.
func TestCodecLogChunk(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 30000)
	for _, want := range []*jobletv1.LogChunk{
		{},
		{Data: []byte("x")},
		{Stream: jobletv1.Stream_STREAM_STDERR, Data: []byte("err"), Offset: 1},
		{Stream: jobletv1.Stream_STREAM_STDOUT, Data: big, Offset: 1 << 40},
		{Offset: 7},
	} {
		out, err := codec{}.Marshal(want)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var got jobletv1.LogChunk
		if err := proto.Unmarshal(out.Materialize(), &got); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if !proto.Equal(&got, want) {
			t.Errorf("round trip of chunk (stream %v, offset %d, %d bytes) gave (stream %v, offset %d, %d bytes)",
				want.GetStream(), want.GetOffset(), len(want.GetData()), got.GetStream(), got.GetOffset(), len(got.GetData()))
		}
		out.Free()
	}
}

// Other messages are plain protobuf both ways.
func TestCodecOtherMessages(t *testing.T) {
	want := &logdv1.WriteRequest{JobId: "4", Offset: 9, Data: []byte("abc"), Eof: true}
	out, err := codec{}.Marshal(want)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var got logdv1.WriteRequest
	if err := (codec{}).Unmarshal(out, &got); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if !proto.Equal(&got, want) {
		t.Errorf("got %v, want %v", &got, want)
	}
}
