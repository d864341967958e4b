package shim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
)

// buildShim builds cmd/joblet-shim as make build does (static, stripped)
// into a root-owned 0755 file named Binary under dir.
func buildShim(t testing.TB, dir string) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("skipping: no go toolchain to build the shim binary")
		}
	}
	out := filepath.Join(dir, Binary)
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/joblet-shim")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the shim binary: %v\n%s", err, b)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// resetBinary forgets the shim binary, so the next start looks for it
// again.
func resetBinary() {
	binaryMu.Lock()
	binary = nil
	binaryMu.Unlock()
	locateOnce = sync.Once{}
	locateErr = nil
}

// runsFrom reports the memfd process pid runs from and its size.
func runsFrom(t *testing.T, pid int) (string, int64) {
	t.Helper()
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	st, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	link, _ := os.Readlink(exe)
	return link, st.Size()
}

// A job's shim runs from the sealed joblet-shim binary when the isolator
// has one, and from the sealed copy of the isolator's own binary (here:
// the test binary) when not; a job runs under either.
func TestShimRunsFromShimBinaryOrFallback(t *testing.T) {
	requiresRoot(t)
	t.Cleanup(resetBinary)
	resetBinary()
	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}

	// None beside the test binary: the fallback.
	if _, err := os.Stat(filepath.Join(filepath.Dir(os.Args[0]), Binary)); err == nil {
		t.Skip("skipping: a joblet-shim lies beside the test binary")
	}
	p, err := Start(jobSpec(t, "fallback1", "true"))
	if err != nil {
		t.Fatal(err)
	}
	link, size := runsFrom(t, p.Shim().PID)
	if size != self.Size() || !strings.Contains(link, "memfd:") {
		t.Errorf("without a shim binary the shim runs from %s (%d bytes), want the test binary's sealed copy (%d bytes)", link, size, self.Size())
	}
	if r, err := waitReleased(t, p); err != nil || r.ExitCode != 0 {
		t.Fatalf("job under the fallback shim: %+v, %v", r, err)
	}

	bin := buildShim(t, t.TempDir())
	want, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if want.Size() == self.Size() {
		t.Fatal("the shim binary and the test binary have the same size; the check cannot tell them apart")
	}
	if err := UseBinary(bin); err != nil {
		t.Fatal(err)
	}
	p, err = Start(jobSpec(t, "shimbin1", "sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	link, size = runsFrom(t, p.Shim().PID)
	if size != want.Size() || !strings.Contains(link, "memfd:"+Binary) {
		t.Errorf("the shim runs from %s (%d bytes), want the sealed shim binary (%d bytes)", link, size, want.Size())
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if r, err := waitReleased(t, p); err != nil || r.Signal != int(syscall.SIGKILL) {
		t.Fatalf("Wait: %+v, %v", r, err)
	}
}

// The first shim's start finds joblet-shim beside the running executable,
// as make build and the package install it; one that others may write is
// refused, and no shim starts from it.
func TestShimBinaryFoundBesideExecutable(t *testing.T) {
	requiresRoot(t)
	t.Cleanup(resetBinary)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	beside := filepath.Join(filepath.Dir(exe), Binary)
	if _, err := os.Lstat(beside); !errors.Is(err, fs.ErrNotExist) {
		t.Skipf("skipping: %s exists (%v)", beside, err)
	}
	bin := buildShim(t, t.TempDir())
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's directory is go test's own temporary one.
	if err := os.WriteFile(beside, b, 0o755); err != nil {
		t.Skipf("skipping: cannot write beside the test binary: %v", err)
	}
	t.Cleanup(func() { os.Remove(beside) })

	resetBinary()
	w, err := Prestart()
	if err != nil {
		t.Fatal(err)
	}
	link, size := runsFrom(t, w.Pid())
	w.Close()
	if size != int64(len(b)) || !strings.Contains(link, "memfd:"+Binary) {
		t.Errorf("the shim runs from %s (%d bytes), want the shim binary beside the executable (%d bytes)", link, size, len(b))
	}

	if err := os.Chmod(beside, 0o757); err != nil {
		t.Fatal(err)
	}
	resetBinary()
	if w, err := Prestart(); err == nil {
		w.Close()
		t.Fatal("a shim started from a shim binary others may write")
	}
}

// BenchmarkShimBinaryStart times a job's start (the call until the job
// runs) under a shim of the isolator's binary (here: the test binary, which
// links the isolator's packages and gRPC as the isolator does) and under
// joblet-shim, jobs' inits running from the init binary as in production,
// alternately so both see the same load, each with a new shim
// (cold: fork, exec and the shim's Go start on the path) and with one
// started 20 ms before (warm, as the pool's), and reports the medians. The
// job's end (100 ms for the output to its missing logd) is not timed.
func BenchmarkShimBinaryStart(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipping: a shim's job needs root to create namespaces and mounts")
	}
	b.Cleanup(resetBinary)
	resetBinary()
	if err := sandbox.UseInitBinary(sandboxtest.BuildInit(b, "..")); err != nil {
		b.Fatal(err)
	}
	bin := buildShim(b, b.TempDir())
	sealed, err := sandbox.SealBinary(bin, Binary)
	if err != nil {
		b.Fatal(err)
	}
	names := []string{"isolator-binary", "joblet-shim"}
	var took [2][2][]time.Duration // [binary][warm]
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		v := i % 2
		binaryMu.Lock()
		binary = map[int]*os.File{0: nil, 1: sealed}[v]
		binaryMu.Unlock()
		for warm := range 2 {
			dir := b.TempDir()
			spec := Spec{
				ID: strconv.Itoa(i), Hostname: "job", Args: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"},
				RootDir: filepath.Join(dir, "root"), WorkDir: filepath.Join(dir, "work"),
				LogdSocket: filepath.Join(dir, "no-logd.sock"), Result: filepath.Join(dir, "r.json"),
				OutputTimeout: 100 * time.Millisecond,
			}
			for _, d := range []string{spec.RootDir, spec.WorkDir} {
				if err := os.Mkdir(d, 0o755); err != nil {
					b.Fatal(err)
				}
			}
			var w *Idle
			if warm == 1 {
				if w, err = Prestart(); err != nil {
					b.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			b.StartTimer()
			t0 := time.Now()
			var proc *Process
			if w != nil {
				proc, err = w.Start(spec)
			} else {
				proc, err = Start(spec)
			}
			took[v][warm] = append(took[v][warm], time.Since(t0))
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := waitReleased(b, proc); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	for v, name := range names {
		for warm, kind := range []string{"cold", "warm"} {
			if d := took[v][warm]; len(d) > 0 {
				slices.Sort(d)
				b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-"+kind+"-p50-ms")
			}
		}
	}
}
