package service

import (
	"context"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/proto/transport"
)

// logCalls logs every call with its method and caller; failed calls are
// logged with their code, so what a user was told can be matched to what
// happened.
func logCalls(log zerolog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		l := log.With().Str(logging.KeyMethod, info.FullMethod).Int(logging.KeyPeerUID, transport.PeerUID(ctx)).Logger()
		resp, err := h(logging.With(ctx, l), req)
		if err != nil {
			l.Warn().Stringer("code", status.Code(err)).Err(err).Msg("call failed")
		} else {
			l.Debug().Msg("call")
		}
		return resp, err
	}
}
