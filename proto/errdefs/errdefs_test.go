package errdefs

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRoundTrip(t *testing.T) {
	for _, k := range kinds {
		err := fmt.Errorf("op: %w", Errorf(k.err, "job 7: %s", k.err))
		wire := ToGRPC(err)
		if got := status.Code(wire); got != k.code {
			t.Fatalf("%v: code %v, want %v", k.err, got, k.code)
		}
		back := FromGRPC(wire)
		if !errors.Is(back, k.err) {
			t.Fatalf("%v: lost kind after round trip: %v", k.err, back)
		}
		if back.Error() != err.Error() {
			t.Fatalf("message changed: %q -> %q", err.Error(), back.Error())
		}
	}
}

func TestUnknownIsInternalAndSafe(t *testing.T) {
	wire := ToGRPC(errors.New("open /var/lib/secret: permission denied"))
	st, _ := status.FromError(wire)
	if st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("got %v %q", st.Code(), st.Message())
	}
}
