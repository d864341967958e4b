package kind_test

import (
	"errors"
	"testing"

	"github.com/joblet-dev/joblet/proto/errdefs/kind"
)

func TestErrorfKeepsKindAndMessage(t *testing.T) {
	err := kind.Errorf(kind.ErrNotFound, "job %s not found", "7")
	if !errors.Is(err, kind.ErrNotFound) || errors.Is(err, kind.ErrInvalidArgument) {
		t.Fatalf("kind of %v is wrong", err)
	}
	if err.Error() != "job 7 not found" {
		t.Fatalf("message %q", err.Error())
	}
}
