package e2e

import (
	"fmt"
	"testing"
	"time"
)

func TestStopKillsAJobThatIgnoresSIGTERM(t *testing.T) {
	needSuite(t)
	// A sleep of about 1000 s, with a duration no other process on the host has.
	dur := fmt.Sprintf("1000.%06d", time.Now().UnixNano()%1e6)
	id := detach(t, "sh", "-c", `trap "" TERM; sleep `+dur)
	t.Cleanup(func() { rnx(t, "stop", id) })

	// Wait for the sleep, so the trap is in place before the stop.
	deadline := time.Now().Add(10 * time.Second)
	for len(hostProcesses("sleep", dur)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("job %s: no `sleep %s` process appeared (status %s)", id, dur, jobStatus(t, id))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)

	budget := stopGrace + 2*time.Second
	start := time.Now()
	stopJob(t, id)
	waitStatus(t, id, "STOPPED", budget-time.Since(start))
	for len(hostProcesses("sleep", dur)) > 0 {
		if time.Since(start) > budget {
			t.Fatalf("job %s is STOPPED but `sleep %s` still runs on the host (pids %v) %v after the stop",
				id, dur, hostProcesses("sleep", dur), budget)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("stopped in %v (grace %v)", time.Since(start).Round(time.Millisecond), stopGrace)

	// Stopping an ended job is a no-op, not an error.
	stopJob(t, id)
	if got := jobStatus(t, id); got != "STOPPED" {
		t.Errorf("after a second stop, job %s is %s, want STOPPED", id, got)
	}
}
