package sandbox_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
)

// useReaper makes jobs' inits run from the init binary and hand over to
// the reaper, both built now, for the rest of t.
func useReaper(t *testing.T) {
	t.Helper()
	requiresRoot(t)
	reaper := sandboxtest.BuildReaper(t, "..")
	if err := sandbox.UseInitBinary(sandboxtest.BuildInit(t, "..")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sandbox.ResetInit)
	if err := sandbox.UseReaperBinary(reaper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sandbox.DropReaper)
}

// isReaper reports whether host process pid runs the sealed reaper.
func isReaper(pid int) bool {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || !strings.Contains(link, "memfd:joblet-reaper") {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && string(comm) == "joblet-reaper\n"
}

// startReaped starts the shell script (with user namespace u) and waits
// until the job's init has handed over to the reaper; the script runs
// only then (it waits for /work/go, which this creates), so the handover
// is never skipped for a command that has already exited, however loaded
// the machine.
func startReaped(t *testing.T, u *sandbox.UserNS, script string) *job {
	t.Helper()
	spec, marker := newSpec(t, "sh", "-c", "while [ ! -e /work/go ]; do sleep 0.01; done\n"+script)
	spec.UserNS = u
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatalf("Start(%q): %v", script, err)
	}
	waitFor(t, "the init handed over to the reaper", func() bool { return isReaper(j.proc.Pid()) })
	if err := os.WriteFile(filepath.Join(spec.WorkDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestReaperRunsAsPID1: once the command runs, the job's PID 1 is the
// sealed reaper, with no user namespace and with one; its exit reports are
// those of the Go init (exit codes, killing signals).
func TestReaperRunsAsPID1(t *testing.T) {
	useReaper(t)
	// Executable, readable by nobody: the init's exec of it (without
	// CAP_DAC_OVERRIDE) leaves the reaper non-dumpable from its start.
	var st unix.Stat_t
	if err := unix.Fstat(int(sandbox.ReaperFile().Fd()), &st); err != nil || st.Mode&0o7777 != 0o100 {
		t.Errorf("sealed reaper: mode %#o, %v; want 0100", st.Mode&0o7777, err)
	}
	for _, u := range []*sandbox.UserNS{nil, &testUserNS} {
		for _, c := range []struct {
			script string
			code   int
			signal int
			stdout string
		}{
			{script: "echo ok", code: 0, stdout: "ok\n"},
			{script: "exit 3", code: 3},
			{script: "exit 255", code: 255},
			{script: "kill -KILL $$", code: 137, signal: 9},
			{script: "kill -SEGV $$", code: 139, signal: 11},
		} {
			j := startReaped(t, u, c.script)
			if !sandboxtest.NsPid1(t, j.proc.Pid()) {
				t.Errorf("the reaper (pid %d) is not PID 1 of the job", j.proc.Pid())
			}
			res := j.wait()
			if res.ExitCode != c.code || res.Signal != c.signal || j.stdout.String() != c.stdout {
				t.Errorf("userns %v, %q: exit %d signal %d stdout %q; want %d, %d, %q",
					u != nil, c.script, res.ExitCode, res.Signal, j.stdout.String(), c.code, c.signal, c.stdout)
			}
		}
	}
}

// TestReaperShortCommandStaysGo: a command that has exited by the time the
// init would hand over is finished by the Go init, with the same report.
func TestReaperShortCommandStaysGo(t *testing.T) {
	useReaper(t)
	for _, c := range []struct {
		args []string
		code int
	}{{[]string{"true"}, 0}, {[]string{"false"}, 1}, {[]string{"sh", "-c", "exit 7"}, 7}} {
		out, res := run(t, c.args...)
		if res.ExitCode != c.code || res.Signal != 0 || out != "" {
			t.Errorf("%q: exit %d signal %d out %q, want %d", c.args, res.ExitCode, res.Signal, out, c.code)
		}
	}
}

// TestReaperKillsOrphans: orphans and daemonized grandchildren, reparented
// to the reaper, are reaped while the command runs and killed before the
// exit is reported.
func TestReaperKillsOrphans(t *testing.T) {
	useReaper(t)
	// An orphan that exits at once (reaped by the reaper while the command
	// runs: no zombie left), and a daemon (double fork, own session) that
	// would run for 100 s.
	j := startReaped(t, nil, "(true &); (setsid sleep 100 &); sleep 0.5; echo parent-done")
	waitFor(t, "the daemon", func() bool { return len(markedPids(t, j.marker)) >= 3 })
	res := j.wait()
	if res.ExitCode != 0 || j.stdout.String() != "parent-done\n" {
		t.Fatalf("exit %d, stdout %q", res.ExitCode, j.stdout.String())
	}
	if pids := markedPids(t, j.marker); len(pids) != 0 {
		t.Errorf("processes of the job left after its exit was reported: %v", pids)
	}
}

// TestReaperForwardsSignals: after the handover SIGTERM reaches the
// command (which traps it), and Kill still ends the job.
func TestReaperForwardsSignals(t *testing.T) {
	useReaper(t)
	for _, u := range []*sandbox.UserNS{nil, &testUserNS} {
		j := startReaped(t, u, `trap 'echo term; exit 42' TERM; touch /work/ready; while :; do sleep 0.05; done`)
		// Once the trap is set.
		waitFor(t, "the trap", func() bool { _, err := os.Stat(filepath.Join(j.spec.WorkDir, "ready")); return err == nil })
		if err := j.proc.Terminate(); err != nil {
			t.Fatal(err)
		}
		if res := j.wait(); res.ExitCode != 42 || j.stdout.String() != "term\n" {
			t.Errorf("userns %v: after SIGTERM: exit %d stdout %q, want 42, term", u != nil, res.ExitCode, j.stdout.String())
		}
		j = startReaped(t, u, "exec sleep 30")
		if err := j.proc.Kill(); err != nil {
			t.Fatal(err)
		}
		if res := j.wait(); res.Signal != 9 {
			t.Errorf("userns %v: after Kill: %+v", u != nil, res)
		}
	}
}

// TestReaperNoSignalLostAtHandover: SIGTERM sent to the init at any moment
// around the handover (right after Start returns, when the Go init is
// handing over) always reaches the command: `sleep 30` dies of it. A lost
// one leaves it sleeping, and the job is killed after 5 s.
func TestReaperNoSignalLostAtHandover(t *testing.T) {
	useReaper(t)
	n := 150
	if testing.Short() {
		n = 30
	}
	handedOver := 0
	for i := range n {
		spec, marker := newSpec(t, "sleep", "30")
		j, err := start(t, spec, marker)
		if err != nil {
			t.Fatal(err)
		}
		// 0-1.5 ms: the handover takes well under a millisecond after
		// "started" (what Start waits for); the spread covers before,
		// during and after it.
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
		if isReaper(j.proc.Pid()) {
			handedOver++
		}
		if err := j.proc.Terminate(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(5*time.Second, func() { _ = j.proc.Kill() })
		res := j.wait()
		timer.Stop()
		if res.Signal != 15 {
			t.Fatalf("job %d: SIGTERM lost: %+v", i, res)
		}
	}
	t.Logf("%d jobs, SIGTERM after the handover in %d", n, handedOver)
	if handedOver == 0 {
		t.Error("no SIGTERM was sent after the handover: no init handed over")
	}
}

// TestReaperOutOfTheCommandsReach: the reaper is non-dumpable and keeps no
// descriptor the command could see: with no user namespace the command is
// root, with the reaper's own capabilities, and still cannot open PID 1's
// /proc files (exe, fd links, environ, maps: the kernel's ptrace access
// check, which a non-dumpable process fails); its own descriptors are 0, 1
// and 2 only (and ls's own, 3). The ptrace call itself the command's
// seccomp filter refuses before the kernel would. With a user namespace
// it cannot signal PID 1 at all; without, what it sends cannot stop it.
func TestReaperOutOfTheCommandsReach(t *testing.T) {
	useReaper(t)
	for _, u := range []*sandbox.UserNS{nil, &testUserNS} {
		j := startReaped(t, u, `cat /proc/1/comm
readlink /proc/1/exe >/dev/null 2>&1 && echo exe-readable
readlink /proc/1/fd/4 >/dev/null 2>&1 && echo fd-readable
cat /proc/1/maps >/dev/null 2>&1 && echo maps-readable
cat /proc/1/environ >/dev/null 2>&1 && echo environ-readable
kill -0 1 2>/dev/null && echo can-signal-init
kill -KILL 1 2>/dev/null; kill -STOP 1 2>/dev/null; sleep 0.1
exec ls /proc/self/fd`)
		res := j.wait()
		// ls's own directory descriptor is 3.
		want := "joblet-reaper\n0\n1\n2\n3\n"
		if u == nil {
			// Host root without a user namespace may signal PID 1, whose
			// kernel drops SIGKILL and SIGSTOP from inside its namespace:
			// the job carried on to its ls.
			want = "joblet-reaper\ncan-signal-init\n0\n1\n2\n3\n"
		}
		if res.ExitCode != 0 || j.stdout.String() != want {
			t.Errorf("userns %v: exit %d, stdout %q, want %q (stderr %q)", u != nil, res.ExitCode, j.stdout.String(), want, j.stderr.String())
		}
	}
}
