package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReliabilityIsolatorKilledAtStart SIGKILLs the isolator at a job's
// start. A job starts once its RUNNING record is written to the journal,
// and its RunJob returns once that record is durable (isolator/jobs), so:
//   - a job whose RunJob returned is there after the isolator's restart,
//     and ends with its own result (its shim ran on and is adopted);
//   - a job whose RunJob the kill cut short either never started or has a
//     record (the write is in the page cache, whatever the fdatasync did):
//     the new isolator adopts it, and nothing of a job runs unknown. The
//     suite's leak check at the end finds any shim left running.
func TestReliabilityIsolatorKilledAtStart(t *testing.T) {
	s := ownSuite(t, suiteOptions{})

	// Killed right after RunJob returned: once for a job still running
	// when the new isolator comes, once for one that ended before.
	for _, c := range []struct{ script, out, code string }{
		{"sleep 1; echo slow; exit 3", "slow\n", "3"},
		{"echo fast; exit 4", "fast\n", "4"},
	} {
		id := s.detach(t, "sh", "-c", c.script)
		old := s.kill(t, "isolator")
		s.waitBack(t, "isolator", old)
		if !s.waitStatus(t, id, "FAILED", 15*time.Second) {
			continue
		}
		if got := s.field(t, id, "Exit Code"); got != c.code {
			t.Errorf("job %s (%q) across the kill: exit code %q, want %s", id, c.script, got, c.code)
		}
		if l := s.rnx(t, "log", id); l.code != 0 || l.stdout != c.out {
			t.Errorf("job %s (%q) across the kill: rnx log: want %q; got %v", id, c.script, c.out, l)
		}
	}

	// Killed while jobs are starting: some RunJobs returned, some were cut
	// short; the jobs run long, so one started without a record would
	// still run at the leak check.
	const starts = 8
	var wg sync.WaitGroup
	runs := make([]*background, starts)
	for i := range runs {
		runs[i] = s.rnxBackground(t, "", "run", "-d", "sleep", "30")
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, r := range runs {
			<-r.done
		}
	}()
	// As soon as the first RunJob returned: the others are on their way.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		first := false
		for _, r := range runs {
			select {
			case <-r.done:
				first = true
			default:
			}
		}
		if first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no rnx run -d returned within 20 s")
		}
	}
	old := s.kill(t, "isolator")
	wg.Wait()
	s.waitBack(t, "isolator", old)

	told := map[string]bool{}
	for _, r := range runs {
		res := r.wait(t, time.Second)
		if res.code == 0 {
			told[headerID(t, res.stdout)] = true
		}
	}
	listed := s.list(t)
	for id := range told {
		if _, ok := listed[id]; !ok {
			t.Errorf("job %s: its RunJob returned before the kill, and it is not listed after", id)
		}
	}
	t.Logf("%d of %d RunJobs returned before the kill; %d jobs listed", len(told), starts, len(listed))
	// Every job listed is adopted: it runs until stopped, then ends.
	for id, rec := range listed {
		if !strings.Contains(jsonString(rec), "RUNNING") {
			if told[id] {
				t.Errorf("job %s: %s after the kill, want it RUNNING (adopted)", id, jsonString(rec))
			}
			continue
		}
		if r := s.rnx(t, "stop", id); r.code != 0 {
			t.Errorf("rnx stop %s: %v", id, r)
		}
		s.waitStatus(t, id, "STOPPED", 15*time.Second)
	}
}
