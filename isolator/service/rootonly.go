package service

import (
	"context"

	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/errdefs"
	isolatorv1 "github.com/joblet-dev/joblet/proto/gen/isolator/v1"
	"github.com/joblet-dev/joblet/proto/transport"
)

// rootOnlyMethods are the calls of the isolator API that only root may
// make: the scheduler's hand-off. The gateway's uid may use the socket for
// the public calls, but must not start a scheduled job before its time.
var rootOnlyMethods = map[string]bool{
	isolatorv1.Isolator_StartScheduled_FullMethodName: true,
}

// rootOnly refuses rootOnlyMethods to every caller but root.
func rootOnly(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if rootOnlyMethods[info.FullMethod] && transport.PeerUID(ctx) != 0 {
		return nil, errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrPermissionDenied, "only the scheduler may start scheduled jobs"))
	}
	return h(ctx, req)
}
