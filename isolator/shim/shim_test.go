package shim

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/isolator/shim/wire"
	"github.com/joblet-dev/joblet/isolator/store"
	"github.com/joblet-dev/joblet/proto/errdefs"
)

func TestResultFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "7.json")
	want := Result{ExitCode: 137, Signal: 9, EndedAt: time.Now().UTC().Truncate(time.Second), OutputComplete: true}
	if err := WriteResult(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResult(path)
	if err != nil || got != want {
		t.Fatalf("read back %+v (%v), want %+v", got, err, want)
	}
	// Replaced whole, with no temporary file left.
	want.ExitCode, want.Signal = 7, 0
	if err := WriteResult(path, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadResult(path); got != want {
		t.Fatalf("after rewrite %+v, want %+v", got, want)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %v", ents)
	}
	if _, err := ReadResult(filepath.Join(dir, "8.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing result: %v", err)
	}
	// The job's usage, which the scope of the systemd driver takes with it,
	// travels in the result.
	u := Usage{CPUTime: 1500 * time.Millisecond, MemoryPeakBytes: 67 << 20, OOMKills: 1}
	want.Usage = &u
	if err := WriteResult(path, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadResult(path); got.Usage == nil || *got.Usage != u || got.ExitCode != 7 {
		t.Fatalf("with usage: %+v, want usage %+v", got, u)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadResult(path); err == nil {
		t.Fatal("a torn result was read")
	}
}

func TestErrorKindsSurviveThePipe(t *testing.T) {
	for _, kind := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrPermissionDenied} {
		err := wire.DecodeError(wire.ErrorMessage(errdefs.Errorf(kind, "command not found: x")))
		if !errors.Is(err, kind) || err.Error() != "command not found: x" {
			t.Errorf("%v came back as %v", kind, err)
		}
	}
	// An error of no kind stays internal: no kind, its text for the log.
	err := wire.DecodeError(wire.ErrorMessage(errors.New("mount /proc: EPERM")))
	for _, kind := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrUnavailable} {
		if errors.Is(err, kind) {
			t.Errorf("internal error became %v", kind)
		}
	}
	if err.Error() != "mount /proc: EPERM" {
		t.Errorf("text %q", err)
	}
}

// startSleeper runs a process to stand for a shim; it is killed at cleanup.
func startSleeper(t *testing.T) (*exec.Cmd, store.Proc) {
	t.Helper()
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	p, err := store.Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, p
}

func TestAdopt(t *testing.T) {
	dir := t.TempDir()
	result := filepath.Join(dir, "1.json")

	t.Run("alive, then exits with a result", func(t *testing.T) {
		cmd, p := startSleeper(t)
		proc, err := Adopt(p, store.Proc{}, result)
		if err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() {
			_, err := proc.Wait()
			waited <- err
		}()
		select {
		case err := <-waited:
			t.Fatalf("Wait returned while the shim runs: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if err := WriteResult(result, Result{ExitCode: 7, OutputComplete: true}); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Process.Kill()
		select {
		case err := <-waited:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not see the shim exit")
		}
		r, err := proc.Wait()
		if err != nil || r.ExitCode != 7 {
			t.Fatalf("result %+v %v", r, err)
		}
		if err := proc.Release(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(result); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("Release left the result")
		}
	})
	t.Run("alive, detached", func(t *testing.T) {
		_, p := startSleeper(t)
		proc, err := Adopt(p, store.Proc{}, result)
		if err != nil {
			t.Fatal(err)
		}
		proc.Detach()
		if _, err := proc.Wait(); !errors.Is(err, ErrDetached) {
			t.Fatalf("Wait after Detach: %v", err)
		}
	})
	t.Run("pid reused", func(t *testing.T) {
		_, p := startSleeper(t)
		p.StartTicks++ // another process now has the shim's pid
		if _, err := Adopt(p, store.Proc{}, result); !errors.Is(err, ErrNoResult) {
			t.Fatalf("a reused pid was adopted: %v", err)
		}
	})
	t.Run("gone with a result", func(t *testing.T) {
		cmd, p := startSleeper(t)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err := WriteResult(result, Result{ExitCode: 3, OutputComplete: false}); err != nil {
			t.Fatal(err)
		}
		proc, err := Adopt(p, store.Proc{}, result)
		if err != nil {
			t.Fatal(err)
		}
		r, err := proc.Wait()
		if err != nil || r.ExitCode != 3 || r.OutputComplete {
			t.Fatalf("result %+v %v", r, err)
		}
		_ = proc.Release()
	})
	t.Run("gone with a torn result", func(t *testing.T) {
		// What a machine crash may leave of a result written without fsync.
		for _, torn := range []string{"", `{"exit_code":0,"sig`} {
			cmd, p := startSleeper(t)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if err := os.WriteFile(result, []byte(torn), 0o600); err != nil {
				t.Fatal(err)
			}
			proc, err := Adopt(p, store.Proc{}, result)
			if err != nil {
				t.Fatal(err)
			}
			if r, err := proc.Wait(); !errors.Is(err, ErrNoResult) {
				t.Fatalf("torn result %q: %+v, %v; want ErrNoResult", torn, r, err)
			}
			_ = proc.Release()
		}
	})
	t.Run("gone without a result", func(t *testing.T) {
		cmd, p := startSleeper(t)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if _, err := Adopt(p, store.Proc{}, result); !errors.Is(err, ErrNoResult) {
			t.Fatalf("got %v, want ErrNoResult", err)
		}
	})
}
