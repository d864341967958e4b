package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// checkByteExact runs the same generator locally, through `rnx run` and
// through `rnx log` afterwards, and compares the three streams.
func checkByteExact(t *testing.T, argv ...string) {
	t.Helper()
	want := localHashed(t, argv[0], argv[1:]...)

	got, r := rnxHashed(t, append([]string{"run"}, argv...)...)
	if r.code != 0 {
		t.Fatalf("rnx run %s: %v", strings.Join(argv, " "), r)
	}
	if got != want {
		t.Errorf("rnx run %s: stdout is %v, want %v", strings.Join(argv, " "), got, want)
	}
	id := headerID(t, r.stderr)
	t.Logf("rnx run %s: %v in %v", strings.Join(argv, " "), got, r.took.Round(time.Millisecond))

	logged, lr := rnxHashed(t, "log", id)
	if lr.code != 0 {
		t.Fatalf("rnx log %s: %v", id, lr)
	}
	if logged != want {
		t.Errorf("rnx log %s: output is %v, want %v", id, logged, want)
	}
}

func TestOutputSeqByteExact(t *testing.T) {
	needSuite(t)
	checkByteExact(t, "seq", "1000000")
}

func TestOutput100MBByteExact(t *testing.T) {
	needSuite(t)
	checkByteExact(t, "sh", "-c", "yes abcdefgh | head -c 104857600")
}

func TestStdoutAndStderrBothArrive(t *testing.T) {
	needSuite(t)
	id, r := mustRun(t, "sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2")
	if r.stdout != "out1\nout2\n" {
		t.Errorf("stdout: want \"out1\\nout2\\n\", got %q", r.stdout)
	}
	// The header (whose Command: line quotes the script) comes first on stderr.
	lines := strings.Split(r.stderr, "\n")
	if !strings.HasSuffix(r.stderr, "\nerr1\nerr2\n") || slices.Contains(lines, "out1") || slices.Contains(lines, "out2") {
		t.Errorf("stderr: want the header, then the job's err1 and err2 and none of its stdout; got %q", r.stderr)
	}
	l := rnx(t, "log", id)
	if l.code != 0 {
		t.Fatalf("rnx log %s: %v", id, l)
	}
	all := l.stdout + l.stderr
	for _, want := range []string{"out1", "err1", "out2", "err2"} {
		if !strings.Contains(all, want) {
			t.Errorf("rnx log %s: no %q in %v", id, want, l)
		}
	}
}

func TestLogFollowsARunningJob(t *testing.T) {
	needSuite(t)
	id := detach(t, "sh", "-c", "echo first; sleep 2; echo second")
	l := rnx(t, "log", id)
	if l.code != 0 || l.stdout != "first\nsecond\n" {
		t.Errorf("rnx log %s of a running job: want it to follow until the end, \"first\\nsecond\\n\"; got %v", id, l)
	}
	waitStatus(t, id, "COMPLETED", 3*time.Second)
}
