package client

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/logstream"
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

// logdWire is a LogChunk as logd's codec writes it: stream, offset, then
// the data field last.
func logdWire(s jobletv1.Stream, off int64, data []byte) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(s))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(off))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(data)))
	return append(b, data...)
}

// A chunk in logd's layout, in 16 KiB frames or split anywhere in its
// header, decodes to its fields with its data in a logstream buffer of its
// own (one that logstream.Copy recycles), not in the received frames.
func TestCodecChunkInLogdLayout(t *testing.T) {
	data := make([]byte, 64<<10-256)
	for i := range data {
		data[i] = byte(i * 13)
	}
	wire := logdWire(jobletv1.Stream_STREAM_STDERR, 1<<40+7, data)
	for _, split := range []int{1, 3, 16 << 10} {
		var bufs mem.BufferSlice
		for rest := slices.Clone(wire); len(rest) > 0; {
			n := min(split, len(rest))
			bufs = append(bufs, mem.SliceBuffer(rest[:n]))
			rest = rest[n:]
		}
		var got jobletv1.LogChunk
		if err := (Codec{}).Unmarshal(bufs, &got); err != nil {
			t.Fatalf("split %d: %v", split, err)
		}
		if got.GetStream() != jobletv1.Stream_STREAM_STDERR || got.GetOffset() != 1<<40+7 || !bytes.Equal(got.GetData(), data) {
			t.Fatalf("split %d: got (%v, %d, %d bytes)", split, got.GetStream(), got.GetOffset(), len(got.GetData()))
		}
		if cap(got.GetData()) != logstream.ChunkBufferSize {
			t.Errorf("split %d: data in a buffer of capacity %d, not a logstream chunk buffer", split, cap(got.GetData()))
		}
		for _, b := range bufs {
			clear(b.ReadOnlyData())
		}
		if !bytes.Equal(got.GetData(), data) {
			t.Fatalf("split %d: decoded data shares memory with the received buffers", split)
		}
	}
}

// Layouts other than logd's (data not last, a field repeated after the
// data, data longer than a chunk buffer) and malformed ones decode as the
// protobuf codec decodes them, or fail as it fails.
func TestCodecChunkOtherLayouts(t *testing.T) {
	data := []byte("some output\n")
	dataFirst := protowire.AppendTag(nil, 2, protowire.BytesType)
	dataFirst = protowire.AppendBytes(dataFirst, data)
	dataFirst = protowire.AppendTag(dataFirst, 3, protowire.VarintType)
	dataFirst = protowire.AppendVarint(dataFirst, 5)
	twice := append(logdWire(jobletv1.Stream_STREAM_STDOUT, 1, data), logdWire(jobletv1.Stream_STREAM_STDERR, 2, []byte("x"))...)
	big := logdWire(jobletv1.Stream_STREAM_STDOUT, 3, bytes.Repeat([]byte("y"), logstream.ChunkBufferSize+1))
	empty := logdWire(jobletv1.Stream_STREAM_STDOUT, 4, nil)
	for name, wire := range map[string][]byte{"data first": dataFirst, "fields twice": twice, "larger than a buffer": big, "empty data": empty} {
		var want jobletv1.LogChunk
		if err := protobuf.Unmarshal(wire, &want); err != nil {
			t.Fatal(err)
		}
		var got jobletv1.LogChunk
		if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(slices.Clone(wire))}, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.GetStream() != want.GetStream() || got.GetOffset() != want.GetOffset() || !bytes.Equal(got.GetData(), want.GetData()) {
			t.Errorf("%s: got (%v, %d, %q), want (%v, %d, %q)", name, got.GetStream(), got.GetOffset(), got.GetData(), want.GetStream(), want.GetOffset(), want.GetData())
		}
	}
	// The data's length says more than the message holds.
	cut := logdWire(jobletv1.Stream_STREAM_STDOUT, 1, data)
	cut = cut[:len(cut)-1]
	var c jobletv1.LogChunk
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(cut)}, &c); err == nil {
		t.Error("a chunk cut short decoded without error")
	}
}
