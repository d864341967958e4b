package shim

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// alive reports whether process pid exists and has not exited (a zombie
// has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return ok && rest != "" && rest[0] != 'Z' && rest[0] != 'X'
}

// initBinaryOnce builds and seals the init binary once per test process.
var initBinaryOnce sync.Once

// useInitBinary makes jobs' inits run from the init binary, as the
// isolator's do (the sandbox keeps it for the rest of the process), before
// the test's pool starts its shims: an init born in a 16 MB job's cgroup,
// or preforked in a spare that becomes one (its start charged there), fits
// as the real binary (measured ~5 MB peak), not as this test binary (18 MB
// charged under -race: the limit cannot even be written).
func useInitBinary(t *testing.T) {
	t.Helper()
	requiresRoot(t)
	initBinaryOnce.Do(func() {
		if err := sandbox.UseInitBinary(sandboxtest.BuildInit(t, "..")); err != nil {
			t.Fatal(err)
		}
	})
}

// holdJob makes the FIFO go in workDir, which a job reads from (read x <
// /work/go) to stay until the test has looked at it (Process.Pid is 0 for
// a job that ended before the isolator identified its init); the returned
// func lets it go on.
func holdJob(t *testing.T, workDir string) func() {
	t.Helper()
	fifo := filepath.Join(workDir, "go")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString("go\n")
		f.Close()
	}
}

// privateNetns stands in for netd's namespace of a job: a network
// namespace held by a sleeping process (stopped at cleanup). It returns
// the namespace's file and its identity (readlink).
func privateNetns(t *testing.T) (path, id string) {
	t.Helper()
	holder := exec.Command("unshare", "--net", "sleep", "1000")
	if err := holder.Start(); err != nil {
		t.Skipf("skipping: cannot start unshare: %v", err)
	}
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
	})
	path = "/proc/" + strconv.Itoa(holder.Process.Pid) + "/ns/net"
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if id, err = os.Readlink(path); err == nil && id != self {
			return path, id
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --net did not make a namespace")
		}
	}
}

// A job on a netd network, given a waiting shim that preforked its init
// (in a network namespace of its own): that init is the job's, born in the
// job's cgroup, and the command runs in netd's namespace, which the init
// joined at its gate.
func TestNetdJobFromPreforkingShim(t *testing.T) {
	parent, p, w, sp := takePreforking(t)
	preforked := w.InitPID()
	j, err := parent.CreateFromSpare("netd1", &jobletv1.Limits{MaxMemoryMb: 16, MaxPids: 16}, "", sp.Spare)
	if err != nil {
		_ = p.Release(w)
		t.Fatal(err)
	}
	defer j.Destroy()
	path, netns := privateNetns(t)
	spec := jobSpec(t, "netd1", "sh", "-c", "readlink /proc/self/ns/net > /work/ns; cat /proc/self/cgroup > /work/cg; read x < /work/go")
	spec.Placer = j
	spec.NetnsPath = path
	goOn := holdJob(t, spec.WorkDir)
	proc, err := p.StartWith(w, spec)
	if err != nil {
		t.Fatal(err)
	}
	if proc.Pid() != preforked || proc.InitMoved() {
		t.Errorf("the job's init %d (preforked %d), moved %v: want the preforked init, born in the job's cgroup", proc.Pid(), preforked, proc.InitMoved())
	}
	goOn()
	if r, err := waitReleased(t, proc); err != nil || r.ExitCode != 0 {
		t.Fatalf("result %+v, %v", r, err)
	}
	if b, _ := os.ReadFile(filepath.Join(spec.WorkDir, "ns")); strings.TrimSpace(string(b)) != netns {
		t.Errorf("the job's network namespace %q, want netd's %q", b, netns)
	}
	if b, _ := os.ReadFile(filepath.Join(spec.WorkDir, "cg")); !strings.Contains(string(b), "/netd1\n") {
		t.Errorf("the job's cgroups %q, want the job's", b)
	}
}

// A warm shim drained (the pool closed) leaves nothing: the shim and the
// init it preforked are gone, its spare removed, no mount added to the
// host's.
func TestDrainedWarmShimLeavesNothing(t *testing.T) {
	parent := v1Parent(t)
	mountsBefore, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(1)
	defer p.Close()
	p.UseSpares(testSpares{parent})
	waitIdle(t, p, 1)
	p.mu.Lock()
	w := p.idle[0]
	p.mu.Unlock()
	shim, init := w.Pid(), w.InitPID()
	if init <= 0 || !alive(init) {
		t.Fatalf("the waiting shim preforked no init (%d)", init)
	}
	p.Close()
	if alive(shim) || alive(init) {
		t.Errorf("after Close: shim %d alive %v, its init %d alive %v", shim, alive(shim), init, alive(init))
	}
	if left := sparesLeft(t, parent); len(left) > 0 {
		t.Errorf("spares left after Close: %v", left)
	}
	if after, _ := os.ReadFile("/proc/self/mountinfo"); len(strings.Split(string(after), "\n")) != len(strings.Split(string(mountsBefore), "\n")) {
		t.Errorf("host mounts changed across the warm shim's life:\nbefore %s\nafter %s", mountsBefore, after)
	}
	noChildren(t)
}

// A waiting shim whose preforked init was killed while it waited still
// starts its job: with an init cloned for it, born in the job's cgroup from
// the spawner's thread, still in the spare.
func TestPreforkedInitKilledWhileWaiting(t *testing.T) {
	parent, p, w, sp := takePreforking(t)
	killed := w.InitPID()
	pidfd, err := unix.PidfdOpen(killed, 0)
	if err != nil {
		_ = p.Release(w)
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil {
		_ = p.Release(w)
		t.Fatal(err)
	}
	// Readable once every thread of it has exited: its parent can then
	// wait for it (a zombie leader with threads still exiting cannot be).
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 5000); n != 1 || err != nil {
		_ = p.Release(w)
		t.Fatalf("the killed init did not exit (%v)", err)
	}
	j, err := parent.CreateFromSpare("killed1", &jobletv1.Limits{MaxMemoryMb: 16, MaxPids: 16}, "", sp.Spare)
	if err != nil {
		_ = p.Release(w)
		t.Fatal(err)
	}
	defer j.Destroy()
	spec := jobSpec(t, "killed1", "true")
	spec.Placer = j
	proc, err := p.StartWith(w, spec)
	if err != nil {
		t.Fatal(err)
	}
	if proc.Pid() == killed || proc.InitMoved() {
		t.Errorf("the job's init %d (killed %d), moved %v: want a new init, born in the job's cgroup", proc.Pid(), killed, proc.InitMoved())
	}
	if r, err := waitReleased(t, proc); err != nil || r.ExitCode != 0 {
		t.Fatalf("result %+v, %v", r, err)
	}
}

// takePreforking starts a pool of one shim with spares under a v1 parent
// and takes its waiting shim, which must sit in a spare with an init
// forked ahead. The pool is closed when the test ends.
func takePreforking(t *testing.T) (*cgroup.Parent, *Pool, *Idle, testSpare) {
	t.Helper()
	parent := v1Parent(t)
	useInitBinary(t)
	p := NewPool(1)
	t.Cleanup(func() { p.Close() })
	p.UseSpares(testSpares{parent})
	waitIdle(t, p, 1)
	w := p.Take()
	sp, ok := w.Spare().(testSpare)
	if !ok || w.InitPID() <= 0 {
		_ = p.Release(w)
		t.Fatalf("the waiting shim has no spare (%v) or preforked no init (%d)", w.Spare(), w.InitPID())
	}
	return parent, p, w, sp
}
