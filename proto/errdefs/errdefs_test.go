package errdefs

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
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

// A job's record attached to an error crosses two gRPC edges (isolator →
// gateway → client) with the kind and message, also when the error itself
// is internal and its message is withheld.
func TestJobCrossesEdges(t *testing.T) {
	job := &jobletv1.Job{Id: "7", State: jobletv1.JobState_JOB_STATE_FAILED, ExitCode: 127}
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{Errorf(ErrNotFound, "job 7: command not found: x"), codes.NotFound, "run: job 7: command not found: x"},
		{errors.New("mount /var/lib/secret: busy"), codes.Internal, "internal error"},
	} {
		wire := ToGRPC(FromGRPC(ToGRPC(WithJob(fmt.Errorf("run: %w", tc.err), job))))
		st, _ := status.FromError(wire)
		if st.Code() != tc.code || st.Message() != tc.msg {
			t.Fatalf("%v: got %v %q", tc.err, st.Code(), st.Message())
		}
		if got := JobOf(wire); got.GetId() != "7" || got.GetExitCode() != 127 {
			t.Fatalf("%v: job on the wire %v", tc.err, got)
		}
		if got := JobOf(FromGRPC(wire)); got.GetId() != "7" {
			t.Fatalf("%v: job after FromGRPC %v", tc.err, got)
		}
	}
	if WithJob(nil, job) != nil || JobOf(ToGRPC(Errorf(ErrNotFound, "x"))) != nil {
		t.Fatal("no error or no job must stay so")
	}
}

func TestUnknownIsInternalAndSafe(t *testing.T) {
	wire := ToGRPC(errors.New("open /var/lib/secret: permission denied"))
	st, _ := status.FromError(wire)
	if st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("got %v %q", st.Code(), st.Message())
	}
}

func TestNoSpace(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		cause := fmt.Errorf("write /var/lib/joblet/x.tmp: %w", errno)
		err := fmt.Errorf("save job 7: %w", NoSpace(cause, "state", "job 7's record"))
		if !errors.Is(err, ErrResourceExhausted) || !errors.Is(err, errno) {
			t.Fatalf("%v: kind or cause lost: %v", errno, err)
		}
		want := "save job 7: no space left on the server's state disk (job 7's record); free some space and try again"
		if err.Error() != want {
			t.Fatalf("message %q, want %q", err, want)
		}
		if st, _ := status.FromError(ToGRPC(err)); st.Code() != codes.ResourceExhausted || st.Message() != want {
			t.Fatalf("on the wire: %v %q", st.Code(), st.Message())
		}
	}
	other := errors.New("disk on fire")
	if got := NoSpace(other, "state", "x"); got != other {
		t.Fatalf("an error of another cause changed: %v", got)
	}
	if NoSpace(nil, "state", "x") != nil {
		t.Fatal("nil became an error")
	}
}
