package service

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

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
		if err := protobuf.Unmarshal(out.Materialize(), &got); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if !protobuf.Equal(&got, want) {
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
	if !protobuf.Equal(&got, want) {
		t.Errorf("got %v, want %v", &got, want)
	}
}

// A WriteRequest decoded by the codec must equal protobuf's decoding of the
// same bytes, whatever the fields and however the bytes are split into
// buffers, with unknown fields skipped, and its data must not share memory
// with the received buffers, which gRPC reuses once Unmarshal returns.
func TestCodecWriteRequestMatchesProtobuf(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 100000)
	unknown := protowire.AppendTag(nil, 99, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("from a newer writer"))
	for _, msg := range []*logdv1.WriteRequest{
		{},
		{JobId: "7", Offset: 12, Stream: jobletv1.Stream_STREAM_STDERR, Data: []byte("err\n")},
		{JobId: "1234", Offset: 1 << 40, Stream: jobletv1.Stream_STREAM_STDOUT, Data: big},
		{JobId: "9", Offset: -1, Eof: true},
	} {
		wire, err := protobuf.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		for _, extra := range [][]byte{nil, unknown} {
			wire := append(slices.Clone(wire), extra...)
			var want logdv1.WriteRequest
			if err := protobuf.Unmarshal(wire, &want); err != nil {
				t.Fatal(err)
			}
			for _, split := range []int{1, 7, 16 << 10} {
				var bufs mem.BufferSlice
				for rest := slices.Clone(wire); len(rest) > 0; {
					n := min(split, len(rest))
					bufs = append(bufs, mem.SliceBuffer(rest[:n]))
					rest = rest[n:]
				}
				got := &logdv1.WriteRequest{JobId: "stale", Data: []byte("stale")}
				if err := (codec{}).Unmarshal(bufs, got); err != nil {
					t.Fatalf("unmarshal (split %d): %v", split, err)
				}
				if got.GetJobId() != want.GetJobId() || got.GetOffset() != want.GetOffset() || got.GetStream() != want.GetStream() ||
					!bytes.Equal(got.GetData(), want.GetData()) || got.GetEof() != want.GetEof() {
					t.Errorf("split %d: got (%q, %d, %v, %d bytes, %v), want (%q, %d, %v, %d bytes, %v)", split,
						got.GetJobId(), got.GetOffset(), got.GetStream(), len(got.GetData()), got.GetEof(),
						want.GetJobId(), want.GetOffset(), want.GetStream(), len(want.GetData()), want.GetEof())
				}
				for _, b := range bufs {
					clear(b.ReadOnlyData()) // what gRPC's reuse of its buffers would do
				}
				if !bytes.Equal(got.GetData(), want.GetData()) {
					t.Fatalf("split %d: the decoded data shares memory with the received buffers", split)
				}
			}
		}
	}
}

// Malformed input is an error, as it is for protobuf.
func TestCodecWriteRequestMalformed(t *testing.T) {
	wire, err := protobuf.Marshal(&logdv1.WriteRequest{JobId: "7", Data: []byte("0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, []byte{0xff, 0xfe})
	for name, in := range map[string][]byte{
		"truncated data": wire[:len(wire)-3],
		"truncated tag":  {0x80},
		"bad utf-8 id":   badUTF8,
	} {
		var m logdv1.WriteRequest
		if err := (codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(in)}, &m); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
		if err := protobuf.Unmarshal(in, &m); err == nil {
			t.Errorf("%s: protobuf decodes it: the test input is not malformed", name)
		}
	}
}
