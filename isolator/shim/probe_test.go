package shim

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// probeClone is how os/exec's one-time pidfd check clones its throwaway
// child, as strace prints it: no exit signal, unlike every other clone of a
// shim (the init's and the command's have SIGCHLD, threads CLONE_THREAD).
const probeClone = "flags=CLONE_VM|CLONE_PIDFD|CLONE_VFORK,"

// A waiting shim has made os/exec's pidfd check before its spec comes: once
// the spec is read, the only child the shim clones is the job's init (seen
// by strace following the shim). It fails when the check is left to the
// init's start (the job's path, and the job's cgroup from a spare). The
// shim is reaped all the same, though a tracer was told of its exit first
// (watch waits for the kernel to hand it back).
func TestPidfdProbeMadeWhileTheShimWaits(t *testing.T) {
	requiresRoot(t)
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("skipping: needs strace to see the shim's clones")
	}
	w, err := Prestart()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir() + "/strace"
	tr := exec.Command(strace, "-f", "-o", out, "-e", "trace=read,clone,clone3", "-p", strconv.Itoa(w.Pid()))
	errR, errW, err := os.Pipe()
	if err != nil {
		w.Close()
		t.Fatal(err)
	}
	tr.Stderr = errW
	err = tr.Start()
	errW.Close()
	if err != nil {
		errR.Close()
		w.Close()
		t.Fatal(err)
	}
	// strace says it attached (every thread) before it traces anything.
	attached := make(chan bool, 1)
	go func() {
		defer errR.Close()
		said := false
		for sc := bufio.NewScanner(errR); sc.Scan(); {
			if !said && strings.Contains(sc.Text(), "attached") {
				said = true
				attached <- true
			}
		}
		if !said {
			attached <- false
		}
	}()
	select {
	case ok := <-attached:
		if !ok {
			w.Close()
			_ = tr.Wait()
			t.Fatal("strace ended without attaching")
		}
	case <-time.After(10 * time.Second):
		w.Close()
		_ = tr.Process.Kill()
		_ = tr.Wait()
		t.Fatal("strace did not attach")
	}
	proc, err := w.Start(jobSpec(t, "probe", "true"))
	if err != nil {
		_ = tr.Process.Kill()
		_ = tr.Wait()
		t.Fatal(err)
	}
	if r, err := proc.Wait(); err != nil || r.ExitCode != 0 {
		t.Errorf("result %+v, %v", r, err)
	}
	if err := proc.Release(); err != nil {
		t.Error(err)
	}
	// Every tracee has exited: strace ends by itself.
	done := make(chan error, 1)
	go func() { done <- tr.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = tr.Process.Kill()
		<-done
		t.Fatal("strace still running after the shim ended")
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	specRead, initCloned := false, false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		l := sc.Text()
		switch {
		case strings.Contains(l, `read(3, "{`):
			specRead = true
		case !specRead:
		case strings.Contains(l, probeClone):
			t.Errorf("os/exec's pidfd check after the spec came: %s", l)
		case strings.Contains(l, "CLONE_NEWPID"):
			initCloned = true
		}
	}
	if !specRead || !initCloned {
		t.Fatalf("strace saw the spec read %v, the init's clone %v: nothing to judge", specRead, initCloned)
	}
	noChildren(t)
}
