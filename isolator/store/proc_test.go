package store

import (
	"os"
	"os/exec"
	"strconv"
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

// TestParseStat: the state and start time are found after the command
// name, whatever it holds.
func TestParseStat(t *testing.T) {
	rest := " 1 4242 4242 0 -1 4194560 110 0 0 0 3 1 0 0 20 0 1 0 987654321 12345 67 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	for _, tc := range []struct {
		line  string
		state string
		ticks uint64
		ok    bool
	}{
		{"4242 (sleep) S" + rest, "S", 987654321, true},
		{"4242 (a b) c) (d) Z" + rest, "Z", 987654321, true},
		{"4242 () R" + rest, "R", 987654321, true},
		{"4242 (sleep) S 1 2 3\n", "", 0, false},
		{"4242 sleep S" + rest, "", 0, false},
		{"4242 (sleep) S 1 4242 4242 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x 1\n", "", 0, false},
	} {
		state, ticks, ok := parseStat([]byte(tc.line))
		if state != tc.state || ticks != tc.ticks || ok != tc.ok {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d, %v", tc.line, state, ticks, ok, tc.state, tc.ticks, tc.ok)
		}
	}
}

// TestStatAllocatesLittle: reading a process's stat costs its path, not a
// copy of the file and its fields.
func TestStatAllocatesLittle(t *testing.T) {
	pid := os.Getpid()
	want, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(want[strings.LastIndexByte(string(want), ')')+1:]))
	state, ticks, err := stat(pid)
	if err != nil || state != f[0] || strconv.FormatUint(ticks, 10) != f[19] {
		t.Fatalf("stat = %q, %d, %v; /proc/self/stat says %s, %s", state, ticks, err, f[0], f[19])
	}
	// The path and its C copy; the race detector adds one.
	if n := testing.AllocsPerRun(20, func() { _, _, _ = stat(pid) }); n > 4 {
		t.Errorf("stat allocates %v times per call; want at most 4", n)
	}
}

// BenchmarkStat: one read of a process's state and start time.
func BenchmarkStat(b *testing.B) {
	b.ReportAllocs()
	pid := os.Getpid()
	for b.Loop() {
		if _, _, err := stat(pid); err != nil {
			b.Fatal(err)
		}
	}
}
