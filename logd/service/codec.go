package service

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// codec is logd's gRPC codec: protobuf, except that a LogChunk is written
// without copying its data. The store hands Read a fresh buffer per chunk
// that nothing writes to again, so the message is sent as a few bytes of
// header followed by that buffer itself, instead of the whole chunk being
// copied into a pooled buffer first.
type codec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

// Marshal implements encoding.CodecV2. The fields come out in the order
// stream, offset, data, which any protobuf decoder accepts.
func (codec) Marshal(v any) (mem.BufferSlice, error) {
	c, ok := v.(*jobletv1.LogChunk)
	if !ok || len(c.GetData()) == 0 {
		return protoCodec.Marshal(v)
	}
	hdr := make([]byte, 0, 32)
	if s := c.GetStream(); s != 0 {
		hdr = protowire.AppendTag(hdr, 1, protowire.VarintType)
		hdr = protowire.AppendVarint(hdr, uint64(s))
	}
	if o := c.GetOffset(); o != 0 {
		hdr = protowire.AppendTag(hdr, 3, protowire.VarintType)
		hdr = protowire.AppendVarint(hdr, uint64(o))
	}
	hdr = protowire.AppendTag(hdr, 2, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(len(c.GetData())))
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.SliceBuffer(c.GetData())}, nil
}

// Unmarshal implements encoding.CodecV2.
func (codec) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec.Unmarshal(data, v) }

// Name implements encoding.CodecV2: on the wire it is plain protobuf.
func (codec) Name() string { return proto.Name }
