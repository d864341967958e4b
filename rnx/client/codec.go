package client

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Codec is rnx's gRPC codec, installed on every call of a Conn: protobuf,
// except that a LogChunk, which carries a job's output, is decoded with its
// data copied once. The protobuf codec copies a received message twice: its
// frames into one pooled buffer, then the data field out of it into a fresh
// slice. Here the frames are copied into one fresh buffer and the data field
// points into it; the buffer belongs to the chunk alone, since gRPC reuses
// the frames once Unmarshal returns. Its name is "proto": on the wire it is
// plain protobuf.
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

// unmarshalChunk decodes a LogChunk (stream = 1, data = 2, offset = 3).
// Unknown fields are skipped; a malformed message is an error, as with the
// protobuf codec.
func unmarshalChunk(data mem.BufferSlice, c *jobletv1.LogChunk) error {
	protobuf.Reset(c)
	b := data.Materialize()
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
