package api

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// What a helper call's error becomes for the client: a client that went
// away is not an internal error, a helper that is down is named, a kinded
// error keeps its message, and anything else hides its internals.
func TestUserError(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"client canceled, as the helper's stream reports it", status.Error(codes.Canceled, "context canceled"), codes.Canceled, "context canceled"},
		{"deadline passed", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), codes.DeadlineExceeded, "context deadline exceeded"},
		{"local cancel", context.Canceled, codes.Canceled, ""},
		{"helper down", errdefs.Errorf(errdefs.ErrUnavailable, "connection refused on /run/joblet/logd.sock"), codes.Unavailable, "the logd service is unavailable; try again shortly"},
		{"kinded", errdefs.Errorf(errdefs.ErrNotFound, "job 7 not found"), codes.NotFound, "job 7 not found"},
		{"internal", errors.New("open /var/lib/joblet/logd/7.log: permission denied"), codes.Internal, "internal error"},
	} {
		got := status.Convert(userError(ctx, "logd", tc.err))
		if got.Code() != tc.code || (tc.msg != "" && got.Message() != tc.msg) {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, got.Code(), got.Message(), tc.code, tc.msg)
		}
	}
}
