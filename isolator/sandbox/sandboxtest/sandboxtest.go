// Package sandboxtest helps tests of packages that start jobs' inits.
package sandboxtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
