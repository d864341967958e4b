package sandbox_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
)

// TestJobsRunFromInitBinary: with UseInitBinary, a job's init runs from the
// sealed copy of the small binary, not from the running one; jobs with and
// without a user namespace run as before.
func TestJobsRunFromInitBinary(t *testing.T) {
	requiresRoot(t)
	bin := sandboxtest.BuildInit(t, "..")
	if err := sandbox.UseInitBinary(bin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sandbox.ResetInit)
	if f := sandbox.InitFile(); f == nil {
		t.Fatal("InitFile is nil after UseInitBinary")
	}
	spec, marker := newSpec(t, "sleep", "30")
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.CheckRunsFromInitBinary(t, j.proc.Pid(), bin)
	if err := j.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	j.wait()

	for _, u := range []*sandbox.UserNS{nil, &testUserNS} {
		out, res := runAs(t, u, "sh", "-c", "echo hello; id -u")
		if res.ExitCode != 0 || !strings.HasPrefix(out, "hello\n") {
			t.Errorf("user namespace %v: exit %d, output %q", u != nil, res.ExitCode, out)
		}
	}
}

// TestUseInitBinaryRefusesUnsafeFiles: a file others could write (or not
// a regular file) would let them run code as root in every job's init.
func TestUseInitBinaryRefusesUnsafeFiles(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("\x7fELF"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, 0); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, path := range map[string]string{
		"group-writable": write("g", 0o775, 0),
		"world-writable": write("o", 0o757, 0),
		"not root's":     write("u", 0o755, 65534),
		"a directory":    dir,
		"missing":        filepath.Join(dir, "missing"),
	} {
		if err := sandbox.UseInitBinary(path); err == nil {
			sandbox.ResetInit()
			t.Errorf("%s: UseInitBinary(%s) accepted it", name, path)
		}
	}
	if sandbox.InitFile() != nil {
		t.Error("a refused init binary was kept")
	}
}

// TestInheritInit: only a sealed memfd is taken, and it is moved to a high
// descriptor closed on exec, so no job's process inherits it.
func TestInheritInit(t *testing.T) {
	plain, err := os.CreateTemp(t.TempDir(), "plain")
	if err != nil {
		t.Fatal(err)
	}
	if err := sandbox.InheritInit(plain); err == nil {
		sandbox.ResetInit()
		t.Fatal("InheritInit took a plain file")
	}
	fd, err := unix.MemfdCreate("sealed", unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.InheritInit(os.NewFile(uintptr(fd), "sealed")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sandbox.ResetInit)
	f := sandbox.InitFile()
	if f == nil || f.Fd() < 64 {
		t.Fatalf("inherited init kept at %v, want a descriptor >= 64", f)
	}
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("inherited init descriptor flags %#x (%v), want close-on-exec", flags, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
		t.Error("the inherited descriptor itself was left open")
	}
}

// TestExecSurvivesTheForkShuffle: between fork and exec, Go moves its
// error pipe to the descriptor just above the highest one given to the
// child. With a sealed copy kept right there, a child exec'ing it through
// /proc/self/fd/N would exec that pipe (EACCES; seen under load); given
// the copy too (WithExe), it runs. The child is this test binary, which
// runs no test and exits 0.
func TestExecSurvivesTheForkShuffle(t *testing.T) {
	exe, err := sandbox.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n := int(exe.Fd())
	if _, err := unix.FcntlInt(uintptr(n-1), unix.F_GETFD, 0); err == nil {
		t.Skipf("descriptor %d, just below the sealed copy's, is in use", n-1)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if err := unix.Dup3(int(null.Fd()), n-1, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	below := os.NewFile(uintptr(n-1), "below")
	defer below.Close()
	run := func(files []*os.File) error {
		p, err := os.StartProcess(sandbox.ExecPath(exe), []string{"sandbox.test", "-test.run=^$"}, &os.ProcAttr{Files: files})
		if err != nil {
			return err
		}
		st, err := p.Wait()
		if err == nil && !st.Success() {
			err = fmt.Errorf("child: %v", st)
		}
		return err
	}
	files := []*os.File{null, null, null, below} // the highest passed: n-1
	if err := run(files); err != nil {
		t.Logf("without the copy among its files, the child fails as expected: %v", err)
	} else {
		t.Log("without the copy among its files, the child ran (this Go no longer moves its pipe there)")
	}
	if err := run(sandbox.WithExe(files, exe)); err != nil {
		t.Fatalf("with the copy among its files: %v", err)
	}
}
