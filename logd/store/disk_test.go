package store

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/testkit/smalldisk"
)

// With the log directory on a full disk an append is refused with a
// ResourceExhausted error that says so, the output already stored stays
// whole and readable, and the same append succeeds once space is back, so
// a retrying writer loses nothing.
func TestLogDiskFull(t *testing.T) {
	dir, ok := smalldisk.Dir(t, "256k")
	if !ok {
		return
	}
	s := open(t, dir, 1<<30)
	mustAppend(t, s, "1", false, rec(out, 0, "before the disk filled\n"))

	filler := smalldisk.Fill(t, dir)

	big := strings.Repeat("x", 64<<10)
	_, err := s.Append(context.Background(), "1", []logdapi.Record{rec(out, 23, big)}, false)
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "no space left on the server's log disk") {
		t.Fatalf("append on a full disk: %v, want ResourceExhausted naming the log disk", err)
	}
	if got := string(bytesOf(readAll(t, s, "1", 0))); got != "before the disk filled\n" {
		t.Fatalf("after the refused append the log reads %q", got)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if n := mustAppend(t, s, "1", true, rec(out, 23, big)); n != int64(23+len(big)) {
		t.Fatalf("append after space came back accepted up to %d, want %d", n, 23+len(big))
	}
	if got := string(bytesOf(readAll(t, s, "1", 0))); got != "before the disk filled\n"+big {
		t.Fatalf("log after recovery is %d bytes, want the %d of the whole output", len(got), 23+len(big))
	}
}
