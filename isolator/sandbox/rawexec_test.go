package sandbox_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
	"github.com/joblet-dev/joblet/proto/errdefs"
)

// TestCommandStartErrors: a command that cannot be started reports the
// same errors with and without a user namespace, and leaves no process.
func TestCommandStartErrors(t *testing.T) {
	requiresRoot(t)
	for _, u := range []*sandbox.UserNS{nil, &testUserNS} {
		t.Run(fmt.Sprintf("userns=%v", u != nil), func(t *testing.T) {
			for _, tt := range []struct {
				arg0, want string
				kind       error
			}{
				{"joblet-no-such-command", "command not found: joblet-no-such-command", errdefs.ErrNotFound},
				{"/work/plain", "cannot execute /work/plain: permission denied", errdefs.ErrPermissionDenied},
				{"/work", "cannot execute /work: permission denied", errdefs.ErrPermissionDenied},
				{"/work/noexec", "cannot execute /work/noexec: no such file or directory", nil},
			} {
				spec, marker := newSpec(t, tt.arg0)
				spec.UserNS = u
				if err := os.WriteFile(filepath.Join(spec.WorkDir, "plain"), []byte("#!/bin/sh\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(spec.WorkDir, "noexec"), []byte("#!/nonexistent\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				before := countChildren(t)
				_, err := startErr(t, spec, marker)
				if err == nil || err.Error() != tt.want || (tt.kind != nil && !errors.Is(err, tt.kind)) {
					t.Errorf("%s: got %v, want %q (%v)", tt.arg0, err, tt.want, tt.kind)
				}
				if after := countChildren(t); after != before {
					t.Errorf("%s: children of the test went from %d to %d", tt.arg0, before, after)
				}
			}
		})
	}
}

// TestOpenFilesLimit: the command gets the init's open files limit, or,
// where the init's bears the Go runtime's raise (soft = hard - 1: a Go
// program raises any lower soft limit so at start), the conventional 1024.
func TestOpenFilesLimit(t *testing.T) {
	requiresRoot(t)
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	if was.Max < 4096 {
		t.Skipf("skipping: hard open files limit %d too low to tell the cases apart", was.Max)
	}
	// The test's inits inherit what the test sets: its own Setrlimit
	// turns off the stdlib's giving back of the limit before the raise.
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was)
	for _, tt := range []struct{ soft, want uint64 }{
		{was.Max, was.Max},
		{2000, 1024}, // raised by the init's runtime
		{was.Max - 1, 1024},
	} {
		lim := syscall.Rlimit{Cur: tt.soft, Max: was.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		for _, u := range []*sandbox.UserNS{nil, &testUserNS} {
			out, res := runAs(t, u, "sh", "-c", "ulimit -Sn; ulimit -Hn")
			want := strconv.FormatUint(tt.want, 10) + " " + strconv.FormatUint(was.Max, 10)
			if got := strings.Join(strings.Fields(out), " "); res.ExitCode != 0 || got != want {
				t.Errorf("init's limit %d/%d, userns=%v: the command's %q (%+v), want %q", tt.soft, was.Max, u != nil, got, res, want)
			}
		}
	}
}

// BenchmarkStartTrueUserNS is BenchmarkStartTrue with a user namespace,
// whose child is a plain fork rather than a vfork.
func BenchmarkStartTrueUserNS(b *testing.B) { benchStart(b, &testUserNS, false) }

// BenchmarkStartInitBinary and BenchmarkStartInitBinaryUserNS are
// BenchmarkStartTrue and BenchmarkStartTrueUserNS with the jobs' inits
// running from the init binary, as in production.
func BenchmarkStartInitBinary(b *testing.B)       { benchStart(b, nil, true) }
func BenchmarkStartInitBinaryUserNS(b *testing.B) { benchStart(b, &testUserNS, true) }

// benchStart times Start to the end of Wait for /bin/true, and reports the
// CPU time of the whole job (this process's and its reaped descendants':
// the init, which reaps the command) per job.
func benchStart(b *testing.B, u *sandbox.UserNS, initBinary bool) {
	requiresRoot(b)
	if initBinary {
		if err := sandbox.UseInitBinary(sandboxtest.BuildInit(b, "..")); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(sandbox.ResetInit)
	}
	cpu := func() time.Duration {
		var self, children syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
			b.Fatal(err)
		}
		var total time.Duration
		for _, tv := range []syscall.Timeval{self.Utime, self.Stime, children.Utime, children.Stime} {
			total += time.Duration(tv.Nano())
		}
		return total
	}
	n := 0
	before := cpu()
	for b.Loop() {
		spec, marker := newSpec(b, "/bin/true")
		spec.UserNS = u
		j, err := start(b, spec, marker)
		if err != nil {
			b.Fatal(err)
		}
		if res := j.wait(); res.ExitCode != 0 {
			b.Fatal(res)
		}
		n++
	}
	b.ReportMetric(float64(cpu()-before)/float64(n)/1e6, "cpu-ms/job")
}
