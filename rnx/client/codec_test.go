package client

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// A LogChunk decoded by the codec must equal protobuf's decoding of the same
// bytes, however they are split into buffers and with unknown fields
// skipped, and its data must not share memory with the received buffers,
// which gRPC reuses once Unmarshal returns.
func TestCodecChunkMatchesProtobuf(t *testing.T) {
	unknown := protowire.AppendTag(nil, 42, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 5)
	for _, msg := range []*jobletv1.LogChunk{
		{},
		{Stream: jobletv1.Stream_STREAM_STDERR, Data: []byte("err\n"), Offset: 3},
		{Stream: jobletv1.Stream_STREAM_STDOUT, Data: bytes.Repeat([]byte("x"), 300000), Offset: 1 << 40},
	} {
		wire, err := protobuf.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		for _, extra := range [][]byte{nil, unknown} {
			wire := append(slices.Clone(wire), extra...)
			var want jobletv1.LogChunk
			if err := protobuf.Unmarshal(wire, &want); err != nil {
				t.Fatal(err)
			}
			for _, split := range []int{1, 16 << 10} {
				var bufs mem.BufferSlice
				for rest := slices.Clone(wire); len(rest) > 0; {
					n := min(split, len(rest))
					bufs = append(bufs, mem.SliceBuffer(rest[:n]))
					rest = rest[n:]
				}
				got := &jobletv1.LogChunk{Offset: 99, Data: []byte("stale")}
				if err := (Codec{}).Unmarshal(bufs, got); err != nil {
					t.Fatalf("split %d: %v", split, err)
				}
				if got.GetStream() != want.GetStream() || got.GetOffset() != want.GetOffset() || !bytes.Equal(got.GetData(), want.GetData()) {
					t.Errorf("split %d: got (%v, %d, %d bytes), want (%v, %d, %d bytes)", split,
						got.GetStream(), got.GetOffset(), len(got.GetData()), want.GetStream(), want.GetOffset(), len(want.GetData()))
				}
				for _, b := range bufs {
					clear(b.ReadOnlyData())
				}
				if !bytes.Equal(got.GetData(), want.GetData()) {
					t.Fatalf("split %d: decoded data shares memory with the received buffers", split)
				}
			}
		}
	}
	// Malformed input is an error.
	wire, _ := protobuf.Marshal(&jobletv1.LogChunk{Data: []byte("0123456789")})
	var c jobletv1.LogChunk
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire[:len(wire)-2])}, &c); err == nil {
		t.Error("a truncated chunk decoded without error")
	}
}

// Other messages are plain protobuf.
func TestCodecOtherMessages(t *testing.T) {
	want := &jobletv1.GetJobLogsRequest{Id: "12", Follow: true}
	out, err := Codec{}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got jobletv1.GetJobLogsRequest
	if err := (Codec{}).Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !protobuf.Equal(&got, want) {
		t.Errorf("got %v, want %v", &got, want)
	}
}
