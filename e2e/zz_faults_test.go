package e2e

import (
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

// checkRunningJob checks a job that was running when svc was killed. The
// gateway and logd are not in a job's path, so the job must complete with
// all its output, the part written while the service was down too. The
// isolator is the job's parent: a new isolator may end such a job, but the
// record must reach an end state and keep the output written so far.
func checkRunningJob(t *testing.T, svc, id string) {
	t.Helper()
	if svc != "isolator" {
		waitStatus(t, id, "COMPLETED", 10*time.Second)
		if l := rnx(t, "log", id); l.code != 0 || l.stdout != "early\nlate\n" {
			t.Errorf("a job running across the %s restart: rnx log %s: want \"early\\nlate\\n\"; got %v", svc, id, l)
		}
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	status := jobStatus(t, id)
	for status == "RUNNING" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		status = jobStatus(t, id)
	}
	if status == "RUNNING" {
		t.Fatalf("a job running across the isolator restart is still RUNNING after 10s")
	}
	t.Logf("a job running across the isolator restart ended %s", status)
	if l := rnx(t, "log", id); l.code != 0 || !strings.HasPrefix(l.stdout, "early\n") {
		t.Errorf("a job running across the isolator restart: rnx log %s: want its output from before the kill; got %v", id, l)
	}
}
