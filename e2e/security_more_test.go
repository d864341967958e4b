package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SECURITY.md's lines on leaving the job's cgroup, stopping a job that
// hides, terminal control sequences and oversized input, through bin/rnx.

func TestSecurityCannotLeaveItsCgroup(t *testing.T) {
	needSuite(t)
	dur := fmt.Sprintf("1001.%06d", time.Now().UnixNano()%1e6)
	// Every way out a shell has: the cgroupfs paths, and mounting one.
	id := detach(t, "sh", "-c", `for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/unified/cgroup.procs /sys/fs/cgroup/pids/cgroup.procs /proc/1/cgroup; do
		echo $$ > $f 2>/dev/null && echo LEFT $f; done
		mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg 2>/dev/null && echo MOUNTED
		exec sleep `+dur)
	t.Cleanup(func() { rnx(t, "stop", id) })
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); len(pids) == 0; pids = hostProcesses("sleep", dur) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s: no `sleep %s` appeared", id, dur)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pids[0]))
	if err != nil {
		t.Fatal(err)
	}
	// The hierarchies the isolator puts jobs in: the pids and memory
	// controllers on a v1 host, the one line of a v2 host.
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	checked := 0
	for _, line := range lines {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if ctrls := "," + parts[1] + ","; len(lines) > 1 && !strings.Contains(ctrls, ",pids,") && !strings.Contains(ctrls, ",memory,") {
			continue
		}
		checked++
		if !strings.HasSuffix(parts[2], "/"+id) {
			t.Errorf("the job's process (host pid %d) is outside its cgroup: %s", pids[0], line)
		}
	}
	if checked == 0 {
		t.Errorf("no pids or memory cgroup for the job's process in %q", b)
	}
	stopJob(t, id)
	if l := rnx(t, "log", id); strings.Contains(l.stdout, "LEFT") || strings.Contains(l.stdout, "MOUNTED") {
		t.Errorf("the job got out of its cgroup: %v", l)
	}
}

func TestSecurityStopKillsADoubleForkThatTrapsSIGTERM(t *testing.T) {
	needSuite(t)
	dur := fmt.Sprintf("1002.%06d", time.Now().UnixNano()%1e6)
	// The grandchild is orphaned into a session of its own, trapping TERM
	// like its parent.
	id := detach(t, "sh", "-c", `trap "" TERM; (setsid sh -c 'trap "" TERM; sleep `+dur+`; :' &); sleep `+dur+`; :`)
	t.Cleanup(func() { rnx(t, "stop", id) })
	for deadline := time.Now().Add(10 * time.Second); len(hostProcesses("sleep", dur)) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("job %s: want two `sleep %s`, got %v", id, dur, hostProcesses("sleep", dur))
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	stopJob(t, id)
	budget := stopGrace + 3*time.Second
	waitStatus(t, id, "STOPPED", budget)
	for len(hostProcesses("sleep", dur)) > 0 {
		if time.Since(start) > budget {
			t.Fatalf("job %s is STOPPED but its processes %v still run %v after the stop", id, hostProcesses("sleep", dur), budget)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSecurityTerminalSequences runs rnx on a pseudo-terminal (script(1)):
// a job's escape sequences reach it in caret notation, never raw.
func TestSecurityTerminalSequences(t *testing.T) {
	s := needSuite(t)
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) is not installed; rnx/cli TestTerminalOutputIsSanitized covers the writer")
	}
	// A window title, a screen clear and a C1 CSI.
	const payload = `printf '\033]0;pwned\007\033[2J\302\233'; echo end`
	cmdline := fmt.Sprintf("RNX_CONFIG=%s %s run sh -c %q", s.adminConfig(), filepath.Join(s.binDir, "rnx"), payload)
	out, err := exec.Command(script, "-qec", cmdline, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("rnx on a terminal: %v\n%q", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "^[]0;pwned^G^[[2JM-^[end") {
		t.Errorf("rnx on a terminal did not show the sequences in caret notation: %q", got)
	}
	if strings.Contains(got, "\x1b]0;pwned") || strings.Contains(got, "\x1b[2J") || strings.Contains(got, "\u009b") {
		t.Errorf("raw control sequences reached the terminal: %q", got)
	}
}

func TestSecurityOversizedInputRefused(t *testing.T) {
	needSuite(t)
	before := len(listJSON(t))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "../1"}, "invalid job id"},
		{[]string{"status", strings.Repeat("9", 21)}, "invalid job id"},
		{[]string{"log", "1\x1b[2J"}, "invalid job id"},
		{[]string{"run", "echo", strings.Repeat("x", 100<<10), strings.Repeat("y", 100<<10), strings.Repeat("z", 100<<10)}, "arguments too long"},
		{[]string{"run", strings.Repeat("c", 5000)}, "command too long"},
	} {
		r := rnx(t, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("rnx %.60q: want a refusal naming %q, got %v", strings.Join(tc.args, " "), tc.want, r)
		}
		oneLine(t, "rnx "+tc.args[0], r.stderr)
	}
	if after := len(listJSON(t)); after != before {
		t.Errorf("refused requests made %d job records", after-before)
	}
}
