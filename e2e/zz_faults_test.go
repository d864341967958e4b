package e2e

import (
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// restartTimeout is how long a killed service may take to be back, backoff included.
const restartTimeout = 30 * time.Second

// This file is named to sort last: go test runs files in name order, and the
// tests here kill services, so everything else runs against an undisturbed suite.

// TestServiceRestartKeepsRecordsAndLogs SIGKILLs each service in turn and
// checks that the supervisor brings it back and that no job record or log
// made before the kill is lost.
func TestServiceRestartKeepsRecordsAndLogs(t *testing.T) {
	s := needSuite(t)
	logs := map[string]string{} // job id → its full output, for every job made here

	for _, svc := range []string{"gateway", "logd", "isolator"} {
		t.Run(svc, func(t *testing.T) {
			id, r := mustRun(t, "sh", "-c", "seq 5; echo before the "+svc+" dies")
			logs[id] = r.stdout
			// A job still running when the service dies keeps its record and
			// its output; see checkRunningJob for what each service promises.
			late := detach(t, "sh", "-c", "echo early; sleep 2; echo late")
			// And one streaming output when the service dies, ending with 7.
			stream := detach(t, "sh", "-c", streamScript)
			time.Sleep(300 * time.Millisecond) // let it stream before the kill
			before := listJSON(t)
			for id, want := range logs {
				if l := rnx(t, "log", id); l.code != 0 || l.stdout != want {
					t.Fatalf("before the kill: rnx log %s: want %q; got %v", id, want, l)
				}
			}

			pids, err := s.pids()
			if err != nil {
				t.Fatal(err)
			}
			old := pids[svc]
			if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
				t.Fatalf("kill %s (pid %d): %v", svc, old, err)
			}
			killed := time.Now()
			waitRestarted(t, s, svc, old)
			t.Logf("%s (pid %d) killed; back and serving after %v", svc, old, time.Since(killed).Round(time.Millisecond))

			after := listJSON(t)
			for id, rec := range before {
				got, ok := after[id]
				switch {
				case !ok:
					t.Errorf("job %s was listed before the %s died and is gone after: %v", id, svc, rec)
				case !strings.Contains(jsonString(rec), "RUNNING") && !reflect.DeepEqual(rec, got):
					t.Errorf("job %s changed across the %s restart:\nbefore %s\nafter  %s", id, svc, jsonString(rec), jsonString(got))
				}
			}
			for id, want := range logs {
				if l := rnx(t, "log", id); l.code != 0 || l.stdout != want {
					t.Errorf("after the %s restart: rnx log %s: want %q; got %v", svc, id, want, l)
				}
			}
			checkRunningJob(t, svc, late)
			checkStreamingJob(t, svc, stream)
			if r := rnx(t, "run", "echo", "after"); r.code != 0 || r.stdout != "after\n" {
				t.Errorf("after the %s restart: rnx run echo after: %v", svc, r)
			}
		})
	}
}

// waitRestarted waits until pids.json names a new, live pid for svc and
// `rnx list` answers again.
func waitRestarted(t *testing.T, s *suite, svc string, old int) {
	t.Helper()
	deadline := time.Now().Add(restartTimeout)
	var last string
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		pids, err := s.pids()
		if err != nil {
			last = err.Error()
			continue
		}
		if pids[svc] == old || !processAlive(pids[svc]) {
			last = "pids.json still names the old or a dead pid"
			continue
		}
		r := rnx(t, "list")
		if r.code != 0 {
			last = "rnx list: " + r.String()
			continue
		}
		return
	}
	t.Fatalf("%s (pid %d) was not restarted within %v: %s", svc, old, restartTimeout, last)
}

// checkRunningJob checks a job that was running when svc was killed. No
// service is in a job's path while it runs (its shim forwards its output to
// logd and records how it ended; a restarted isolator adopts it), so the job
// must complete with all its output, the part written while the service
// was down too.
func checkRunningJob(t *testing.T, svc, id string) {
	t.Helper()
	waitStatus(t, id, "COMPLETED", 10*time.Second)
	if l := rnx(t, "log", id); l.code != 0 || l.stdout != "early\nlate\n" {
		t.Errorf("a job running across the %s restart: rnx log %s: want \"early\\nlate\\n\"; got %v", svc, id, l)
	}
}

// streamScript prints 30 numbered lines, one every 100 ms, then exits 7.
const streamScript = `i=1; while [ $i -le 30 ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done; exit 7`

// checkStreamingJob checks a job that was streaming output (streamScript)
// when svc was killed: every line reaches its log, once and in order, and
// its record ends FAILED with its real exit code, 7.
func checkStreamingJob(t *testing.T, svc, id string) {
	t.Helper()
	waitStatus(t, id, "FAILED", 15*time.Second)
	var want strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if l := rnx(t, "log", id); l.code != 0 || l.stdout != want.String() {
		t.Errorf("a job streaming across the %s restart: rnx log %s: want lines 1 to 30 once and in order; got %v", svc, id, l)
	}
	if code := statusField(t, id, "Exit Code"); code != "7" {
		t.Errorf("a job streaming across the %s restart: exit code %q, want 7", svc, code)
	}
}
