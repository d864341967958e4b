package service

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/joblet-dev/joblet/proto/errdefs"
	isolatorv1 "github.com/joblet-dev/joblet/proto/gen/isolator/v1"
	"github.com/joblet-dev/joblet/proto/transport"
)

// Only root (the scheduler) may start a scheduled job; the gateway's uid
// keeps the public calls.
func TestRootOnly(t *testing.T) {
	const gatewayUID = 65534
	for _, tc := range []struct {
		method  string
		uid     int
		allowed bool
	}{
		{isolatorv1.Isolator_StartScheduled_FullMethodName, 0, true},
		{isolatorv1.Isolator_StartScheduled_FullMethodName, gatewayUID, false},
		{isolatorv1.Isolator_Run_FullMethodName, gatewayUID, true},
		{isolatorv1.Isolator_Stop_FullMethodName, gatewayUID, true},
	} {
		ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: transport.PeerInfo{UID: tc.uid}})
		called := false
		_, err := rootOnly(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tc.method}, func(context.Context, any) (any, error) {
			called = true
			return nil, nil
		})
		if called != tc.allowed || (err == nil) != tc.allowed {
			t.Errorf("%s by uid %d: called %v, err %v", tc.method, tc.uid, called, err)
		}
		if err != nil && !errors.Is(errdefs.FromGRPC(err), errdefs.ErrPermissionDenied) {
			t.Errorf("%s by uid %d: %v, want permission denied", tc.method, tc.uid, err)
		}
	}
}
