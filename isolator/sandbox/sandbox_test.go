package sandbox_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/proto/errdefs"
)

// TestMain lets the test binary act as a job's init, as the isolator does.
func TestMain(m *testing.M) {
	if sandbox.IsInit() {
		sandbox.Init()
	}
	os.Exit(m.Run())
}

func requiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create namespaces and mounts")
	}
}

const testPath = "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

// job is a started sandbox with its output collected.
type job struct {
	t       testing.TB
	proc    *sandbox.Process
	spec    sandbox.Spec
	marker  string
	outDone chan struct{}
	stdout  bytes.Buffer
	stderr  bytes.Buffer
}

// newSpec returns a spec with fresh dirs, a clean environment with a unique
// marker variable, and the given command.
func newSpec(t testing.TB, args ...string) (sandbox.Spec, string) {
	marker := randomHex(t)
	return sandbox.Spec{
		ID:       "test-" + marker[:8],
		Hostname: "job-" + marker[:8],
		Args:     args,
		Env:      []string{testPath, "JOBLET_TEST_MARKER=" + marker},
		RootDir:  t.TempDir(),
		WorkDir:  t.TempDir(),
	}, marker
}

func randomHex(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// start starts spec with pipes for its output; the job is killed and waited
// for at cleanup if the test did not wait.
func start(t testing.TB, spec sandbox.Spec, marker string) (*job, error) {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	spec.Stdout, spec.Stderr = outW, errW
	p, err := sandbox.Start(spec)
	outW.Close()
	errW.Close()
	j := &job{t: t, proc: p, spec: spec, marker: marker, outDone: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(&j.stdout, outR); outR.Close() }()
	go func() { defer wg.Done(); _, _ = io.Copy(&j.stderr, errR); errR.Close() }()
	go func() { wg.Wait(); close(j.outDone) }()
	if err != nil {
		<-j.outDone
		return nil, err
	}
	return j, nil
}

// wait waits for the job and its output.
func (j *job) wait() sandbox.Result {
	j.t.Helper()
	res, err := j.proc.Wait()
	if err != nil {
		j.t.Fatalf("Wait: %v", err)
	}
	select {
	case <-j.outDone:
	case <-time.After(10 * time.Second):
		j.t.Fatal("job output not closed after the job ended")
	}
	// Wait leaves the init to be reaped in the background: tests that
	// count this process's children need it gone.
	pid := j.proc.Pid()
	waitFor(j.t, "the init reaped", func() bool { return errors.Is(unix.Kill(pid, 0), unix.ESRCH) })
	return res
}

// run runs args in a new sandbox and returns its stdout and result.
func run(t *testing.T, args ...string) (string, sandbox.Result) {
	t.Helper()
	return runAs(t, nil, args...)
}

// runAs runs args in a new sandbox with the user namespace u (none if
// nil) and returns its stdout and result.
func runAs(t *testing.T, u *sandbox.UserNS, args ...string) (string, sandbox.Result) {
	t.Helper()
	spec, marker := newSpec(t, args...)
	spec.UserNS = u
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatalf("Start(%q): %v", args, err)
	}
	res := j.wait()
	if s := j.stderr.String(); s != "" {
		t.Logf("stderr of %q: %s", args, s)
	}
	return j.stdout.String(), res
}

// markedPids lists host processes whose environment holds marker.
func markedPids(t testing.TB, marker string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range entries {
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, []byte("JOBLET_TEST_MARKER="+marker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func TestEchoAndExitCodes(t *testing.T) {
	requiresRoot(t)
	out, res := run(t, "echo", "hi")
	if out != "hi\n" || res != (sandbox.Result{}) {
		t.Errorf("echo hi: got %q %+v, want \"hi\\n\" and exit 0", out, res)
	}
	if _, res := run(t, "sh", "-c", "exit 3"); res != (sandbox.Result{ExitCode: 3}) {
		t.Errorf("exit 3: got %+v", res)
	}
	if _, res := run(t, "sh", "-c", "kill -USR1 $$"); res != (sandbox.Result{ExitCode: 128 + 10, Signal: 10}) {
		t.Errorf("killed by SIGUSR1: got %+v, want exit 138 signal 10", res)
	}
}

func TestOnlyJobProcessesVisible(t *testing.T) {
	requiresRoot(t)
	out, res := run(t, "ps", "-e", "-o", "pid=,comm=")
	if res.ExitCode != 0 {
		t.Fatalf("ps: %+v", res)
	}
	// The init as PID 1, and ps itself.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Fields(lines[0])[0] != "1" || !strings.HasSuffix(lines[1], " ps") {
		t.Errorf("ps -e inside the job shows %q, want only PID 1 and ps", out)
	}
}

func TestFilesystem(t *testing.T) {
	requiresRoot(t)
	for _, p := range []string{"/root", "/etc/shadow", "/home", "/sys", "/proc/1/root/root"} {
		if _, res := run(t, "test", "-e", p); res.ExitCode == 0 {
			t.Errorf("%s exists inside the job", p)
		}
	}
	// The host's root, stacked on the job's by the pivot, is detached
	// before the command runs: "/.." is the job's root.
	if out, _ := run(t, "stat", "-c", "%d %i", "/", "/.."); len(strings.Fields(out)) != 4 || strings.Count(out, strings.SplitN(out, "\n", 2)[0]+"\n") != 2 {
		t.Errorf("/ and /.. in the job: %q, want the same directory", out)
	}
	// Should a bind be writable after all, the file lands on the host: remove it.
	usrFile := "/usr/joblet-test-" + randomHex(t)
	t.Cleanup(func() { os.Remove(usrFile) })
	for _, p := range []string{usrFile, "/etc/joblet-test", "/joblet-test", "/proc/sys/kernel/hostname"} {
		if _, res := run(t, "sh", "-c", "echo x > "+p); res.ExitCode == 0 {
			t.Errorf("writing %s succeeded inside the job", p)
		}
	}
	// Masked /proc files read empty; this kernel has at least keys and
	// timer_list.
	out, _ := run(t, "sh", "-c", `for f in kcore keys timer_list sched_debug; do
		[ -e /proc/$f ] && echo mask $f $(wc -c < /proc/$f); done; pwd; ls /dev | tr '\n' ' '`)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "mask" && f[2] != "0" {
			t.Errorf("/proc/%s not masked: %s bytes", f[1], f[2])
		}
	}
	if !strings.Contains(out, "mask keys 0\n") || !strings.Contains(out, "mask timer_list 0\n") {
		t.Errorf("/proc/keys or /proc/timer_list not masked: %q", out)
	}
	if !strings.Contains(out, "\n/work\n") {
		t.Errorf("cwd is not /work: %q", out)
	}
	if !strings.Contains(out, "null") || strings.Contains(out, "vda") {
		t.Errorf("/dev is not minimal: %q", out)
	}

	spec, marker := newSpec(t, "sh", "-c", "echo data > /work/out && echo tmp > /tmp/x && cat /tmp/x")
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("writing /work and /tmp: %+v, stderr %q", res, j.stderr.String())
	}
	if b, err := os.ReadFile(filepath.Join(spec.WorkDir, "out")); err != nil || string(b) != "data\n" {
		t.Errorf("file written to /work not in WorkDir: %q %v", b, err)
	}
	entries, _ := os.ReadDir(spec.RootDir)
	if len(entries) != 0 {
		t.Errorf("RootDir on the host is not empty after the job: %v", entries)
	}
}

func TestHostnameNetwork(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "sh", "-c", "hostname; echo ---; tail -n +3 /proc/net/dev")
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	parts := strings.Split(j.stdout.String(), "---\n")
	if len(parts) != 2 {
		t.Fatalf("unexpected output %q", j.stdout.String())
	}
	host, _ := os.Hostname()
	if got := strings.TrimSpace(parts[0]); got != spec.Hostname || got == host {
		t.Errorf("hostname %q, want %q (host is %q)", got, spec.Hostname, host)
	}
	ifaces := strings.Split(strings.TrimSpace(parts[1]), "\n")
	if len(ifaces) != 1 || !strings.HasPrefix(strings.TrimSpace(ifaces[0]), "lo:") {
		t.Errorf("interfaces inside the job: %q, want only lo", parts[1])
	}
	out, _ := run(t, "ip", "-o", "link")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], " lo: ") || !strings.Contains(lines[0], "UP") {
		t.Errorf("ip link inside the job: %q, want only lo, up", out)
	}
}

func TestEnvIsExactlySpecEnv(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "env")
	spec.Env = append(spec.Env, "A=1", "B=two words")
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("env: %+v", res)
	}
	if got, want := j.stdout.String(), strings.Join(spec.Env, "\n")+"\n"; got != want {
		t.Errorf("env inside the job:\n%s\nwant:\n%s", got, want)
	}
}

func TestOnlyStdioInherited(t *testing.T) {
	requiresRoot(t)
	out, res := run(t, "ls", "/proc/self/fd")
	// ls's own directory descriptor shows up as 3.
	if got := strings.Fields(out); res.ExitCode != 0 || strings.Join(got, " ") != "0 1 2 3" {
		t.Errorf("descriptors inside the job: %v (%+v), want 0 1 2 and ls's own 3", got, res)
	}
	out, _ = run(t, "sh", "-c", "cat /dev/tty 2>/dev/null || echo no tty")
	if out != "no tty\n" {
		t.Errorf("got %q, want no controlling terminal", out)
	}
}

func TestInitExecutableSealed(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "sleep", "1000")
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = j.proc.Kill(); j.wait() }()
	exe := fmt.Sprintf("/proc/%d/exe", j.proc.Pid())
	if target, err := os.Readlink(exe); err != nil || !strings.HasPrefix(target, "/memfd:") {
		t.Fatalf("init runs from %q (%v), want a memfd copy", target, err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	const want = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if seals&want != want {
		t.Errorf("seals of the init executable %#x, want %#x", seals, want)
	}
}

func TestCommandNotFound(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "joblet-no-such-command")
	before := countChildren(t)
	_, err := start(t, spec, marker)
	if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != "command not found: joblet-no-such-command" {
		t.Fatalf("got %v, want not found \"command not found: joblet-no-such-command\"", err)
	}
	if after := countChildren(t); after != before {
		t.Errorf("children of the test went from %d to %d after a failed Start", before, after)
	}
	spec, marker = newSpec(t, "/work")
	_, err = start(t, spec, marker)
	if !errors.Is(err, errdefs.ErrPermissionDenied) || err.Error() != "cannot execute /work: permission denied" {
		t.Errorf("exec of a directory: got %v, want permission denied \"cannot execute /work: permission denied\"", err)
	}
	if _, err := start(t, sandbox.Spec{ID: "x", Args: []string{"true"}}, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("invalid spec: got %v, want invalid argument", err)
	}
}

// countChildren counts processes whose parent is the test process.
func countChildren(t testing.TB) int {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", os.Getpid(), task.Name()))
		n += len(strings.Fields(string(c)))
	}
	return n
}

func TestTerminateAndKill(t *testing.T) {
	requiresRoot(t)
	// A background child escapes with a double fork; the main command ignores
	// SIGTERM.
	spec, marker := newSpec(t, "sh", "-c", `trap "" TERM; (sleep 1000 &); echo ready; sleep 1000`)
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "job processes", func() bool { return len(markedPids(t, marker)) >= 3 })
	if err := j.proc.Terminate(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if pids := markedPids(t, marker); len(pids) == 0 {
		t.Fatal("the job died on SIGTERM although it ignores it")
	}
	if err := j.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res != (sandbox.Result{ExitCode: 137, Signal: 9}) {
		t.Errorf("after Kill: %+v, want exit 137 signal 9", res)
	}
	if pids := markedPids(t, marker); len(pids) != 0 {
		t.Errorf("processes of the job left after Kill: %v", pids)
	}
	if err := j.proc.Kill(); err != nil {
		t.Errorf("Kill after the end: %v", err)
	}
}

// Wait returns once every process of the job is gone, those the command
// left behind included, and the init is exiting: no thread of it can run
// again, though the kernel may still be tearing down its namespaces.
func TestWaitEndsTheWholeJob(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "sh", "-c", `(sleep 1000 &); (trap "" TERM; sleep 1000 &); sleep 1; exit 3`)
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	var pids []string // the two left behind
	waitFor(t, "job processes", func() bool {
		pids = slices.DeleteFunc(markedPids(t, marker), func(p string) bool {
			b, _ := os.ReadFile("/proc/" + p + "/cmdline")
			return string(b) != "sleep\x001000\x00"
		})
		return len(pids) == 2
	})
	// Not j.wait, which waits for the init to be reaped too.
	if res, err := j.proc.Wait(); err != nil || res != (sandbox.Result{ExitCode: 3}) {
		t.Errorf("result %+v, %v; want exit 3", res, err)
	}
	// Gone, not even zombies: the init reaped them before it reported.
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("process %d of the job is still there when Wait returned (kill: %v)", pid, err)
		}
	}
	task := fmt.Sprintf("/proc/%d/task", j.proc.Pid())
	tids, _ := os.ReadDir(task) // none: reaped already
	for _, tid := range tids {
		b, err := os.ReadFile(filepath.Join(task, tid.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		flags, _ := strconv.ParseUint(f[6], 10, 64)
		if f[0] != "Z" && f[0] != "X" && flags&0x4 == 0 { // PF_EXITING
			t.Errorf("thread %s of the init is not exiting when Wait returned: %s", tid.Name(), b)
		}
	}
	// Reaped says when the init is reaped: a shim waits for it before it
	// exits, so that no init is left to the host's init.
	select {
	case <-j.proc.Reaped():
	case <-time.After(10 * time.Second):
		t.Fatal("Reaped not closed 10 s after Wait")
	}
	if err := unix.Kill(j.proc.Pid(), 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("the init %d is still there once Reaped is closed (kill: %v)", j.proc.Pid(), err)
	}
}

func TestTerminateForwarded(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "sleep", "1000")
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.proc.Terminate(); err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res != (sandbox.Result{ExitCode: 143, Signal: 15}) {
		t.Errorf("after Terminate: %+v, want exit 143 signal 15", res)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHostMountsUnchanged(t *testing.T) {
	requiresRoot(t)
	before, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	run(t, "true")
	spec, marker := newSpec(t, "joblet-no-such-command")
	if _, err := start(t, spec, marker); err == nil {
		t.Fatal("Start of a missing command succeeded")
	}
	after, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("host mount table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestParallel(t *testing.T) {
	requiresRoot(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		spec, marker := newSpec(t, "sh", "-c", fmt.Sprintf("echo job-%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := start(t, spec, marker)
			if err != nil {
				errs <- fmt.Errorf("job %d: start: %w", i, err)
				return
			}
			res, err := j.proc.Wait()
			<-j.outDone
			if err != nil || res.ExitCode != 0 || j.stdout.String() != fmt.Sprintf("job-%d\n", i) {
				errs <- fmt.Errorf("job %d: %+v %v %q", i, res, err, j.stdout.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkStartTrue measures Start to the end of Wait for /bin/true.
func BenchmarkStartTrue(b *testing.B) {
	requiresRoot(b)
	for b.Loop() {
		spec, marker := newSpec(b, "/bin/true")
		j, err := start(b, spec, marker)
		if err != nil {
			b.Fatal(err)
		}
		if res := j.wait(); res.ExitCode != 0 {
			b.Fatal(res)
		}
	}
}
