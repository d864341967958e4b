package daemon

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestProfiling: with EnvPprofDir set, SIGUSR1 writes a heap profile and
// stop writes the CPU profile and a last heap profile, all gzipped pprof.
func TestProfiling(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvPprofDir, dir)
	stop := startProfiling("svc", zerolog.Nop())
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(dir, "heap-svc-*.pprof")); len(m) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heap profile after SIGUSR1")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * time.Millisecond) // heap file names carry the time in ms
	stop()
	heaps, _ := filepath.Glob(filepath.Join(dir, "heap-svc-*.pprof"))
	cpus, _ := filepath.Glob(filepath.Join(dir, "cpu-svc-*.pprof"))
	if len(heaps) != 2 || len(cpus) != 1 {
		t.Fatalf("heap profiles %v, CPU profiles %v; want 2 and 1", heaps, cpus)
	}
	for _, f := range append(heaps, cpus...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Errorf("%s is not a gzipped profile", f)
		}
	}
}

// TestNoHeapSamplingUnlessProfiling: a process linking this package
// samples no allocations unless EnvPprofDir is set when it starts, and
// keeps the runtime's default rate when it is.
func TestNoHeapSamplingUnlessProfiling(t *testing.T) {
	if os.Getenv("JOBLET_TEST_REPORT_RATE") != "" {
		fmt.Print(runtime.MemProfileRate)
		return
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "0"},
		{[]string{EnvPprofDir + "=" + t.TempDir()}, strconv.Itoa(512 << 10)},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNoHeapSamplingUnlessProfiling$")
		cmd.Env = append(append(os.Environ(), "JOBLET_TEST_REPORT_RATE=1", EnvPprofDir+"="), tc.env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		if got, _, _ := strings.Cut(string(out), "PASS"); strings.TrimSpace(got) != tc.want {
			t.Errorf("with %v: MemProfileRate %q, want %s", tc.env, out, tc.want)
		}
	}
}
