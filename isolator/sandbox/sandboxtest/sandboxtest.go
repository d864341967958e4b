// Package sandboxtest helps tests of packages that start jobs' inits.
package sandboxtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

// BuildInit builds cmd/joblet-sandbox-init as make build does (static),
// into a root-owned 0755 file under t's temporary directory, and returns
// its path. isolatorDir is the isolator module's directory relative to the
// test's working directory (a package's own directory).
func BuildInit(t testing.TB, isolatorDir string) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("skipping: no go toolchain to build the init binary")
		}
	}
	out := filepath.Join(t.TempDir(), sandbox.InitBinary)
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "./cmd/joblet-sandbox-init")
	cmd.Dir = isolatorDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the init binary: %v\n%s", err, b)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// ReaperCFLAGS are the flags make build compiles sandbox/reaper/reaper.c
// with (see the Makefile): static, no libc, warnings are errors.
var ReaperCFLAGS = []string{
	"-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
	"-fno-pie", "-no-pie", "-Os", "-Wall", "-Wextra", "-Werror", "-Wl,--build-id=none", "-s",
}

// BuildReaper builds sandbox/reaper/reaper.c as make build does into a
// root-owned 0755 file under t's temporary directory, and returns its
// path. isolatorDir is as for BuildInit. Without a C compiler t is skipped.
func BuildReaper(t testing.TB, isolatorDir string) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("skipping: no C compiler (%s) to build the reaper", cc)
	}
	out := filepath.Join(t.TempDir(), sandbox.ReaperBinary)
	cmd := exec.Command(cc, append(slices.Clone(ReaperCFLAGS), "-o", out, "sandbox/reaper/reaper.c")...)
	cmd.Dir = isolatorDir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the reaper: %v\n%s", err, b)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// Child is a child process of the test, as /proc/<pid>/stat has it.
type Child struct {
	Pid   int
	Comm  string
	State string // "Z" for a zombie
}

func (c Child) String() string { return fmt.Sprintf("%d %s %s", c.Pid, c.Comm, c.State) }

// Children lists the test process's children, zombies included.
func Children(t testing.TB) []Child {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []Child
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(f) > 1 && f[1] == self {
			out = append(out, Child{Pid: pid, Comm: s[strings.IndexByte(s, '(')+1 : i], State: f[0]})
		}
	}
	return out
}

// CheckRunsFromInitBinary fails t unless process pid (a job's init) runs
// from the sealed copy of the init binary at bin, not from the test binary.
func CheckRunsFromInitBinary(t testing.TB, pid int, bin string) {
	t.Helper()
	want, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if want.Size() == self.Size() {
		t.Fatal("the init binary and the test binary have the same size; the check cannot tell them apart")
	}
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	st, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	link, _ := os.Readlink(exe)
	if st.Size() != want.Size() || !strings.Contains(link, "memfd:joblet-init") {
		t.Errorf("the job's init runs from %s (%d bytes), want the sealed init binary (%d bytes)", link, st.Size(), want.Size())
	}
}

// NsPid1 reports whether host process pid is PID 1 of its own PID
// namespace (its NSpid line: host pid, then 1).
func NsPid1(t testing.TB, pid int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(v)
			return len(f) == 2 && f[1] == "1"
		}
	}
	return false
}
