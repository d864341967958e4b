package service

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

	"github.com/joblet-dev/joblet/logd/store"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
)

// codec is logd's gRPC codec: protobuf, except that a LogChunk is written
// without copying its data, and its buffer then goes back to the store. The store hands Read a fresh buffer per chunk
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
	// The chunk is logd's alone once sent: gRPC hands its buffer back to
	// the store's pool when it has been written (Read's chunks come from
	// there; others are left to the garbage collector).
	data := c.GetData()
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.NewBuffer(&data, chunkPool{})}, nil
}

// chunkPool is the mem.BufferPool view of the store's chunk buffers; gRPC
// only ever Puts into it.
type chunkPool struct{}

func (chunkPool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (chunkPool) Put(b *[]byte)     { store.PutChunk(b) }

// Unmarshal implements encoding.CodecV2. A WriteRequest, which carries a
// job's output, is decoded by hand (unmarshalWrite); other messages are
// plain protobuf.
func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*logdv1.WriteRequest); ok {
		return unmarshalWrite(data, m)
	}
	return protoCodec.Unmarshal(data, v)
}

// unmarshalWrite decodes a WriteRequest with its data copied once. The
// protobuf codec copies a received message twice: its frames into one pooled
// buffer, then the data field out of it into a fresh slice. Here the frames
// are copied into one fresh buffer and the data field points into it; the
// buffer belongs to the message alone, as gRPC frees the frames on return.
// Unknown fields are skipped; a malformed message is an error, as with the
// protobuf codec.
func unmarshalWrite(data mem.BufferSlice, m *logdv1.WriteRequest) error {
	protobuf.Reset(m)
	b := data.Materialize()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("decode WriteRequest: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 && !utf8.Valid(v) {
				return errors.New("decode WriteRequest: job_id is not valid UTF-8")
			}
			m.JobId = string(v)
		case num == 2 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Offset = int64(v)
		case num == 3 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Stream = jobletv1.Stream(int32(v))
		case num == 4 && typ == protowire.BytesType:
			m.Data, n = protowire.ConsumeBytes(b)
		case num == 5 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Eof = v != 0
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("decode WriteRequest field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// Name implements encoding.CodecV2: on the wire it is plain protobuf.
func (codec) Name() string { return proto.Name }
