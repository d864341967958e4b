package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// TestSessionFile: a command saves its TLS session under the home
// directory's cache (0600), or where RNX_SESSION_CACHE says, and nowhere
// with RNX_SESSION_CACHE=off.
func TestSessionFile(t *testing.T) {
	s := newSuite(t)
	home := t.TempDir()
	other := filepath.Join(t.TempDir(), "sessions")
	for _, tc := range []struct {
		name string
		env  map[string]string
		file string // "" : no file anywhere
	}{
		{"default", nil, filepath.Join(home, ".cache", "rnx", "tls-sessions")},
		{"RNX_SESSION_CACHE", map[string]string{"RNX_SESSION_CACHE": other}, other},
		{"off", map[string]string{"RNX_SESSION_CACHE": "off"}, ""},
	} {
		os.RemoveAll(filepath.Join(home, ".cache"))
		os.Remove(other)
		r := s.rnxWith(t, func(e *Env) {
			e.Home = home
			e.Getenv = func(k string) string { return tc.env[k] }
		}, "list")
		if r.code != 0 {
			t.Fatalf("%s: rnx list: %d %s", tc.name, r.code, r.stderr)
		}
		for _, f := range []string{filepath.Join(home, ".cache", "rnx", "tls-sessions"), other} {
			fi, err := os.Stat(f)
			switch {
			case f == tc.file && err != nil:
				t.Errorf("%s: no session file: %v", tc.name, err)
			case f == tc.file && fi.Mode() != 0o600:
				t.Errorf("%s: %s has mode %v, want 0600", tc.name, f, fi.Mode())
			case f != tc.file && err == nil:
				t.Errorf("%s: unexpected session file %s", tc.name, f)
			}
		}
	}
}

// TestExitAfterSameOutcome: a process that exits after Main (rnx itself,
// Env.ExitAfter) leaves its connection to the kernel instead of closing
// it; what the user sees is the same: output, exit code, and the session
// saved for the next command.
func TestExitAfterSameOutcome(t *testing.T) {
	for _, args := range [][]string{{"run", "echo", "hi", "there"}, {"run", "exit", "3"}, {"status", "1"}, {"list"}} {
		var got [2]result
		for i, exitAfter := range []bool{false, true} {
			s := newSuite(t) // job ids from 1 for each
			home := t.TempDir()
			got[i] = s.rnxWith(t, func(e *Env) {
				e.Home = home
				e.ExitAfter = exitAfter
			}, args...)
			if _, err := os.Stat(filepath.Join(home, ".cache", "rnx", "tls-sessions")); err != nil {
				t.Errorf("%v, ExitAfter %v: no session file: %v", args, exitAfter, err)
			}
		}
		if got[0] != got[1] {
			t.Errorf("%v: closed %+v, left %+v", args, got[0], got[1])
		}
	}
}

// TestReleaseLeavesOrCloses: release leaves the connection open when the
// process exits after Main (it still answers a call), and closes it
// otherwise.
func TestReleaseLeavesOrCloses(t *testing.T) {
	s := newSuite(t)
	for _, exitAfter := range []bool{true, false} {
		a := &app{configPath: s.config, env: Env{
			Getenv: func(string) string { return "" }, Dir: s.dir, Home: t.TempDir(),
			SystemConfig: filepath.Join(s.dir, "no-system-config"), ExitAfter: exitAfter,
		}}
		conn, err := a.connect(jobletv1.JobService_ListJobs_FullMethodName)
		if err != nil {
			t.Fatal(err)
		}
		a.release(conn)
		_, err = conn.ListJobs(context.Background(), &jobletv1.ListJobsRequest{})
		switch {
		case exitAfter && err != nil:
			t.Errorf("ExitAfter: the connection left open fails a call: %v", err)
		case !exitAfter && status.Code(err) != codes.Canceled:
			t.Errorf("without ExitAfter: a call on the released connection: %v, want it closed (Canceled)", err)
		}
		if exitAfter {
			conn.Close()
		}
	}
}
