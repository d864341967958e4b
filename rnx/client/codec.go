package client

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/logstream"
)

// Codec is rnx's gRPC codec, installed on every call of a Conn: protobuf,
// except that a LogChunk, which carries a job's output, is decoded with its
// data copied once. The protobuf codec copies a received message twice: its
// frames into one pooled buffer, then the data field out of it into a fresh
// slice. Here the data field is copied from the frames straight into a
// buffer of logstream's, which logstream.Copy reuses once the chunk is
// written (gRPC reuses the frames once Unmarshal returns, so the chunk
// cannot point into them). Its name is "proto": on the wire it is plain
// protobuf.
type Codec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

// Unmarshal implements encoding.CodecV2.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if c, ok := v.(*jobletv1.LogChunk); ok {
		return unmarshalChunk(data, c)
	}
	return protoCodec.Unmarshal(data, v)
}

// Name implements encoding.CodecV2.
func (Codec) Name() string { return proto.Name }

// headWindow is how much of a chunk's start unmarshalChunk looks at for the
// fields before the data: logd writes stream and offset first (at most 22
// bytes) and then the data's tag and length.
const headWindow = 32

// unmarshalChunk decodes a LogChunk (stream = 1, data = 2, offset = 3).
// Unknown fields are skipped; a malformed message is an error, as with the
// protobuf codec. A chunk laid out as logd sends it, its data field last, has
// only its data copied, into a logstream buffer; any other layout is
// decoded from one copy of the whole message.
func unmarshalChunk(data mem.BufferSlice, c *jobletv1.LogChunk) error {
	protobuf.Reset(c)
	var win [headWindow]byte
	head := win[:copyFrom(data, 0, win[:])]
	if start, n, ok := dataLast(head, data.Len(), c); ok {
		c.Data = logstream.ChunkBuffer(n)
		copyFrom(data, start, c.Data)
		return nil
	}
	protobuf.Reset(c)
	return unmarshalWhole(data.Materialize(), c)
}

// dataLast decodes the fields in head, the start of a message of size
// bytes, up to the data field, if that field is the message's last and its
// tag and length are in head. It returns where the data starts and its
// length; ok is false for any other layout, including a malformed one
// (unmarshalWhole then says what is wrong).
func dataLast(head []byte, size int, c *jobletv1.LogChunk) (start, n int, ok bool) {
	b := head
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return 0, 0, false
		}
		b = b[k:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			var v uint64
			v, k = protowire.ConsumeVarint(b)
			c.Stream = jobletv1.Stream(int32(v))
		case num == 3 && typ == protowire.VarintType:
			var v uint64
			v, k = protowire.ConsumeVarint(b)
			c.Offset = int64(v)
		case num == 2 && typ == protowire.BytesType:
			var v uint64
			v, k = protowire.ConsumeVarint(b)
			if k < 0 {
				return 0, 0, false
			}
			start = len(head) - len(b) + k
			if uint64(size-start) != v {
				return 0, 0, false // not the last field, or cut short
			}
			return start, int(v), true
		default:
			return 0, 0, false
		}
		if k < 0 {
			return 0, 0, false
		}
		b = b[k:]
	}
	return 0, 0, false
}

// copyFrom copies the bytes of data from offset off on into dst, as many as
// fit, and returns how many it copied.
func copyFrom(data mem.BufferSlice, off int, dst []byte) int {
	n := 0
	for _, buf := range data {
		b := buf.ReadOnlyData()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(dst[n:], b[off:])
		off = 0
		if n == len(dst) {
			break
		}
	}
	return n
}

// unmarshalWhole decodes a LogChunk from b, a copy of the message that the
// chunk may point into.
func unmarshalWhole(b []byte, c *jobletv1.LogChunk) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("decode LogChunk: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			c.Stream = jobletv1.Stream(int32(v))
		case num == 2 && typ == protowire.BytesType:
			c.Data, n = protowire.ConsumeBytes(b)
		case num == 3 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			c.Offset = int64(v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("decode LogChunk field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}
