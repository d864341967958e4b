package store

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestIdentify(t *testing.T) {
	me, err := Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !me.Alive() {
		t.Fatal("this process is not alive")
	}
	other := me
	other.StartTicks++ // the same pid, reused by another process
	if other.Alive() {
		t.Fatal("a reused pid passed for the original process")
	}
	other = me
	other.BootID = "another boot"
	if other.Alive() {
		t.Fatal("a process from another boot passed as alive")
	}
	if (Proc{}).Alive() {
		t.Fatal("the zero Proc is alive")
	}

	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("an exited process is alive")
	}
}

// A process that has exited but is not reaped yet (an orphaned shim that
// the host's init has not got to) is not alive, though its pid and start
// time are still there.
func TestZombieNotAlive(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Alive() {
		t.Fatal("a running child is not alive")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		state, ticks, err := stat(p.PID)
		if err != nil || ticks != p.StartTicks {
			t.Fatalf("the unreaped child is gone from /proc (%v)", err)
		}
		if state == "Z" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed child is still in state %s", state)
		}
	}
	if p.Alive() {
		t.Error("a zombie passed for a live process")
	}
	_ = cmd.Wait()
}

// The boot id is read once and then kept: it is the kernel's, and the
// same for the whole life of the process.
func TestBootIDKept(t *testing.T) {
	want, err := os.ReadFile(bootIDPath)
	if err != nil {
		t.Skip("no boot id here:", err)
	}
	for range 3 {
		got, err := bootID()
		if err != nil || got != strings.TrimSpace(string(want)) {
			t.Fatalf("bootID() = %q, %v; want %q", got, err, want)
		}
	}
	if theBootID.Load() == nil {
		t.Error("the boot id read is not kept")
	}
	if n := testing.AllocsPerRun(10, func() { _, _ = bootID() }); n != 0 {
		t.Errorf("bootID allocates %v times per call once read; want 0", n)
	}
}
