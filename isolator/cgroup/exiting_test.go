package cgroup

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStatExiting(t *testing.T) {
	// Fields from pid up to the flags (field 9), then the rest of a line.
	line := func(comm, state string, flags uint64) string {
		return "4242 (" + comm + ") " + state + " 1 4242 4242 0 -1 " + strconv.FormatUint(flags, 10) + " 110 0 0 0 0 0 0 0 20 0 1 0"
	}
	for _, tc := range []struct {
		line string
		want bool
	}{
		{line("sleep", "S", 0x400000), false},
		{line("sleep", "R", 0x400000|pfExiting), true},
		{line("sleep", "D", pfExiting), true},
		{line("sh", "Z", 0x400000), true},
		{line("sh", "X", 0), true},
		// A command may hold ") " and digits: the fields start after the last ")".
		{line("a) Z 1 2 3 4 5 4 (b", "S", 0), false},
		{line("a) S 1 2 3 4 5 0 (b", "S", pfExiting), true},
	} {
		got, err := statExiting([]byte(tc.line + "\n"))
		if err != nil || got != tc.want {
			t.Errorf("statExiting(%q) = %v, %v; want %v", tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "4242 sleep S 1", "4242 (sleep) S 1 2", "4242 (sleep) S 1 2 3 4 5 x"} {
		if _, err := statExiting([]byte(bad)); err == nil {
			t.Errorf("statExiting(%q): no error", bad)
		}
	}
}

// A live process runs; once killed it is a zombie, which counts as
// exiting, and so does a process that is gone.
func TestRunningSkipsExitingProcesses(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	if live, err := running([]int{pid}); err != nil || len(live) != 1 || live[0] != pid {
		t.Fatalf("running(sleep) = %v, %v; want [%d]", live, err, pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Not reaped: it stays a zombie.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no zombie: %s", b)
		}
		time.Sleep(time.Millisecond)
	}
	if live, err := running([]int{pid}); err != nil || len(live) != 0 {
		t.Errorf("running(zombie) = %v, %v; want none", live, err)
	}
	_ = cmd.Wait()
	reaped = true
	if live, err := running([]int{pid}); err != nil || len(live) != 0 {
		t.Errorf("running(reaped) = %v, %v; want none", live, err)
	}
}
