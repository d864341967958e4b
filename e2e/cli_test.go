package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunEchoAttaches(t *testing.T) {
	needSuite(t)
	r := rnx(t, "run", "echo", "hi")
	if r.code != 0 || r.stdout != "hi\n" {
		t.Fatalf("rnx run echo hi: want stdout \"hi\\n\" and exit 0; got %v", r)
	}
	if !strings.HasPrefix(r.stderr, "ID: ") {
		t.Errorf("the job header on stderr must start with `ID: `; stderr %q", r.stderr)
	}
	headerID(t, r.stderr)
	for _, field := range []string{"Command:", "Status:", "StartTime:"} {
		if !strings.Contains(r.stderr, field) {
			t.Errorf("the job header on stderr has no %s line: %q", field, r.stderr)
		}
	}
}

func TestRunExitCode(t *testing.T) {
	needSuite(t)
	if r := rnx(t, "run", "sh", "-c", "exit 3"); r.code != 3 {
		t.Errorf("rnx run sh -c 'exit 3': want exit 3; got %v", r)
	}
}

// A command that is not there, or not executable, ends rnx as a shell
// would (127, 126), names the job, and the job's record says the same.
func TestRunOfAMissingCommandExitsAsAShell(t *testing.T) {
	needSuite(t)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"joblet-no-such-command"}, 127, "command not found: joblet-no-such-command"},
		{[]string{"/etc/hostname"}, 126, "cannot execute /etc/hostname"},
	} {
		r := rnx(t, append([]string{"run"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("rnx run %s: want exit %d and %q on stderr; got %v", tc.args[0], tc.code, tc.says, r)
			continue
		}
		id := headerID(t, r.stderr)
		st := rnx(t, "status", id)
		if st.code != 0 || !strings.Contains(st.stdout, "FAILED") || !strings.Contains(st.stdout, fmt.Sprintf("Exit Code: %d", tc.code)) {
			t.Errorf("rnx status %s: want FAILED with exit code %d; got %v", id, tc.code, st)
		}
	}
}

func TestAttachedRunOfAStoppedJobExitsWithTheSignal(t *testing.T) {
	needSuite(t)
	// The job's command may be its namespace's init, which ignores signals it
	// did not ask for from inside; a stop from outside always kills it, with
	// SIGTERM or, after the grace period, SIGKILL.
	cmd := exec.Command(filepath.Join(theSuite.binDir, "rnx"), "run", "sleep", "30")
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+theSuite.adminConfig())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	sc := bufio.NewScanner(stderr)
	var id string
	for id == "" && sc.Scan() {
		if m := idLine.FindStringSubmatch(sc.Text()); m != nil {
			id = m[1]
		}
	}
	if id == "" {
		t.Fatalf("attached rnx run sleep 30 printed no ID line: %v", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	stopJob(t, id)

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(stopGrace + 5*time.Second):
		t.Fatalf("attached rnx run of job %s still runs after rnx stop", id)
	}
	if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) && code != 128+int(syscall.SIGKILL) {
		t.Errorf("attached rnx run of stopped job %s: exit %d, want 143 (SIGTERM) or 137 (SIGKILL)", id, code)
	}
	waitStatus(t, id, "STOPPED", 2*time.Second)
}

func TestRunPassesFlagsToTheCommand(t *testing.T) {
	needSuite(t)
	_, r := mustRun(t, "ls", "-la", "/")
	// Only -a lists "." and "..", and only -l prints the "total" line.
	var dotdot bool
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasSuffix(line, " ..") {
			dotdot = true
		}
	}
	if !dotdot || !strings.HasPrefix(r.stdout, "total ") {
		t.Errorf("rnx run ls -la /: want a long listing with \"..\" (flags passed to ls); got %v", r)
	}
}

func TestDetachListStop(t *testing.T) {
	needSuite(t)
	r := rnx(t, "run", "-d", "sleep", "30")
	if r.code != 0 {
		t.Fatalf("rnx run -d sleep 30: %v", r)
	}
	if r.took > 5*time.Second {
		t.Errorf("rnx run -d sleep 30 took %v; it must return at once", r.took)
	}
	id := headerID(t, r.stdout)
	t.Cleanup(func() { rnx(t, "stop", id) })
	for _, field := range []string{"Command:", "Status:", "StartTime:"} {
		if !strings.Contains(r.stdout, field) {
			t.Errorf("the detached job header on stdout has no %s line: %q", field, r.stdout)
		}
	}

	l := rnx(t, "list")
	if l.code != 0 {
		t.Fatalf("rnx list: %v", l)
	}
	if !strings.Contains(strings.SplitN(l.stdout, "\n", 2)[0], "STATUS") {
		t.Errorf("rnx list: want a header row with ID, STATUS, START TIME, COMMAND; got %q", clip(l.stdout))
	}
	if row := listRow(t, l.stdout, id); len(row) < 2 || row[1] != "RUNNING" {
		t.Errorf("rnx list: want job %s RUNNING, got row %q", id, row)
	}
	if got := jobStatus(t, id); got != "RUNNING" {
		t.Errorf("rnx status %s: want RUNNING, got %s", id, got)
	}
	if rec, ok := listJSON(t)[id]; !ok {
		t.Errorf("rnx list --json has no job %s", id)
	} else if !strings.Contains(strings.ToUpper(jsonString(rec)), "RUNNING") {
		t.Errorf("rnx list --json: job %s is not RUNNING: %v", id, rec)
	}

	stopJob(t, id)
	waitStatus(t, id, "STOPPED", stopGrace+2*time.Second)
}

func TestStatusShowsTheJob(t *testing.T) {
	needSuite(t)
	id, _ := mustRun(t, "sh", "-c", "exit 0")
	r := rnx(t, "status", id)
	if r.code != 0 {
		t.Fatalf("rnx status %s: %v", id, r)
	}
	for _, want := range []string{"Job ID: " + id, "Command:", "Status:", "COMPLETED", "Exit Code:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rnx status %s: no %q in %q", id, want, r.stdout)
		}
	}
	j := rnx(t, "status", "--json", id)
	if j.code != 0 || !strings.Contains(j.stdout, id) || !strings.Contains(j.stdout, "COMPLETED") {
		t.Errorf("rnx status --json %s: want JSON naming the job and COMPLETED; got %v", id, j)
	}
	if got := jobStatus(t, mustRunID(t, "sh", "-c", "exit 5")); got != "FAILED" {
		t.Errorf("a job that exits 5: status %s, want FAILED", got)
	}
}

func TestUnknownJob(t *testing.T) {
	needSuite(t)
	for _, verb := range []string{"status", "log", "stop"} {
		r := rnx(t, verb, "999999")
		if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "not found") {
			t.Errorf("rnx %s 999999: want non-zero exit and `not found` on stderr; got %v", verb, r)
		}
		oneLine(t, "rnx "+verb+" 999999", r.stderr)
	}
}

// mustRunID runs an attached job that may exit non-zero and returns its id.
func mustRunID(t *testing.T, args ...string) string {
	t.Helper()
	r := rnx(t, append([]string{"run"}, args...)...)
	return headerID(t, r.stderr)
}
