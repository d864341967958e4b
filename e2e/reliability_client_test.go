package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Client faults (issue 10). A client killed mid-upload: TestUploadClientKilled
// (upload_test.go). A follow reconnecting across a gateway restart without
// duplicating or losing output, and reads retried while a service is down:
// TestReliabilityRestarts/gateway. Here: a client killed mid-stream and
// mid-run.

// TestReliabilityClientKilledMidStream SIGKILLs an attached `rnx run` while
// its job streams output: the job is not stuck, it runs to its end with
// its exit code and all its output recorded, and leaves no workspace.
func TestReliabilityClientKilledMidStream(t *testing.T) {
	needSuite(t)
	before := names(t, isolatorState("work"))
	const lines, code = 30, 5
	marker := fmt.Sprintf("killed-stream-%d", time.Now().UnixNano())
	cmd := exec.Command(filepath.Join(theSuite.binDir, "rnx"), "run", "sh", "-c", "echo "+marker+"; "+countingScript(lines, code))
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+theSuite.adminConfig())
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := out.Read(buf); err != nil { // the stream has started
		t.Fatalf("no output from the attached run: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	id := headerID(t, errb.String())

	waitStatus(t, id, "FAILED", 20*time.Second)
	if c := statusField(t, id, "Exit Code"); c != fmt.Sprint(code) {
		t.Errorf("exit code %q, want %d", c, code)
	}
	if l := rnx(t, "log", id); l.stdout != marker+"\n"+countingOutput(lines) {
		t.Errorf("log of the job whose client was killed: %v", l)
	}
	nothingLeft(t, before)
}

// TestReliabilityClientKilledMidRun SIGKILLs `rnx run` at moments from the
// start of the call to just after it, repeatedly: whatever jobs were made
// end (none stays RUNNING or never starts), and no upload or workspace is
// left behind.
func TestReliabilityClientKilledMidRun(t *testing.T) {
	needSuite(t)
	before := names(t, isolatorState("work"))
	marker := fmt.Sprintf("killed-run-%d", time.Now().UnixNano())
	for i := 0; i < 20; i++ {
		cmd := exec.Command(filepath.Join(theSuite.binDir, "rnx"), "run", "sh", "-c", "echo "+marker+"; sleep 1")
		cmd.Env = append(os.Environ(), "RNX_CONFIG="+theSuite.adminConfig())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i*15) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	var ids []string
	for id, rec := range listJSON(t) {
		if strings.Contains(jsonString(rec), marker) {
			ids = append(ids, id)
		}
	}
	t.Logf("20 killed runs made %d jobs", len(ids))
	if len(ids) > 0 {
		waitAllEnded(t, ids, 20*time.Second)
	}
	for _, id := range ids {
		if st := jobStatus(t, id); st != "COMPLETED" {
			t.Errorf("job %s of a killed run ended %s, want COMPLETED (its client going away is no reason to stop it)", id, st)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if len(names(t, isolatorState("uploads"))) == 0 || time.Now().After(deadline) {
			break
		}
	}
	nothingLeft(t, before)
}
