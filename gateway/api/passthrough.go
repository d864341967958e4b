package api

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/joblet-dev/joblet/proto/errdefs"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
)

// rawChunk is a joblet.v1.LogChunk still in its wire form, as logd sent it.
// logd's Read streams the same message type GetJobLogs does, so the gateway
// forwards the bytes as they are instead of decoding every chunk and
// encoding it again (which was, with the buffers both steps allocate and
// clear, most of the gateway's CPU while a log streamed).
type rawChunk struct{ data mem.BufferSlice }

// Codec is the gateway's gRPC codec: protobuf for every message, except that
// a rawChunk is passed through untouched in both directions. Serve installs
// it on the server (grpc.ForceServerCodecV2) and GetJobLogs uses it on its
// calls to logd (grpc.ForceCodecV2). Its name is "proto", so that peers see
// an ordinary protobuf content type.
type Codec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

// Marshal implements encoding.CodecV2. A rawChunk's buffers are handed over
// to gRPC, which frees them once they are written.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if c, ok := v.(*rawChunk); ok {
		out := c.data
		c.data = nil
		return out, nil
	}
	return protoCodec.Marshal(v)
}

// Unmarshal implements encoding.CodecV2. A rawChunk takes its own reference
// to the received buffers, because gRPC frees its reference on return.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if c, ok := v.(*rawChunk); ok {
		data.Ref()
		c.data = data
		return nil
	}
	return protoCodec.Unmarshal(data, v)
}

// Name implements encoding.CodecV2.
func (Codec) Name() string { return proto.Name }

var readDesc = &grpc.StreamDesc{StreamName: "Read", ServerStreams: true}

// forwardLogs streams logd's Read of jobID to dst chunk by chunk, without
// decoding the chunks. Errors are as logdapi's client returns them.
func forwardLogs(ctx context.Context, cc grpc.ClientConnInterface, jobID string, follow bool, dst grpc.ServerStream) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := cc.NewStream(ctx, readDesc, logdv1.Logd_Read_FullMethodName, grpc.ForceCodecV2(Codec{}))
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	if err := st.SendMsg(&logdv1.ReadRequest{JobId: jobID, Follow: follow}); err != nil && !errors.Is(err, io.EOF) {
		return errdefs.FromGRPC(err)
	}
	if err := st.CloseSend(); err != nil {
		return errdefs.FromGRPC(err)
	}
	for {
		var c rawChunk
		err := st.RecvMsg(&c)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		if err := dst.SendMsg(&c); err != nil {
			c.data.Free() // not handed over when SendMsg failed before Marshal
			return err
		}
	}
}
