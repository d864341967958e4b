package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/e2e/internal/procstat"
)

// A job that runs on has its shim parked (isolator/shim/shimproc/park.go):
// the shim replaced by the reaper binary's few pages, still named
// joblet-shim, until the job ends; it then takes the job back, and the
// job's end, exit code and whole output are recorded as for any job. The
// output written while the shim is parked goes to logd all the same.
func TestParkedShimEndsTheJobAsUsual(t *testing.T) {
	needSuite(t)
	dur := fmt.Sprintf("8.%06d", time.Now().UnixNano()%1e6) // parked 2 s in
	id := detach(t, "sh", "-c", `echo before; sleep `+dur+`; head -c 3000000 /dev/zero | tr '\0' x; echo; echo after >&2; exit 3`)
	shim := parkedShimOf(t, id, func() string { return jobStatus(t, id) }, "sleep", dur)
	if p, err := procstat.Read(shim); err != nil || p.RSSKiB > 256 {
		t.Errorf("parked shim %d holds %d KiB resident (%v), want a few pages", shim, p.RSSKiB, err)
	}
	waitStatus(t, id, "FAILED", 30*time.Second)
	if got := statusField(t, id, "Exit Code"); got != "3" {
		t.Errorf("exit code %q, want 3", got)
	}
	r := rnx(t, "log", id)
	want := "before\n" + strings.Repeat("x", 3000000) + "\n"
	if r.code != 0 || r.stdout != want || !strings.Contains(r.stderr, "after") {
		t.Errorf("log of the parked job: code %d, stdout %d bytes (want %d, equal %v), stderr %q",
			r.code, len(r.stdout), len(want), r.stdout == want, r.stderr)
	}
	if processAlive(shim) {
		t.Errorf("shim %d still there after the job's end", shim)
	}
}

// A parked shim's job is stopped as any other: SIGTERM reaches the
// command, which exits with its own code.
func TestParkedShimJobStops(t *testing.T) {
	needSuite(t)
	dur := fmt.Sprintf("1000.%06d", time.Now().UnixNano()%1e6)
	id := detach(t, "sh", "-c", `trap "echo got-term; exit 42" TERM; echo started; while :; do sleep `+dur+` & wait $!; done`)
	t.Cleanup(func() { rnx(t, "stop", id) })
	parkedShimOf(t, id, func() string { return jobStatus(t, id) }, "sleep", dur)
	stopJob(t, id)
	waitStatus(t, id, "STOPPED", 30*time.Second)
	if got := statusField(t, id, "Exit Code"); got != "42" {
		t.Errorf("exit code %q, want 42 (the command's trap)", got)
	}
	if r := rnx(t, "log", id); !strings.Contains(r.stdout, "started\ngot-term\n") {
		t.Errorf("log %q, want the trap's output after the start", r.stdout)
	}
}

// A parked shim's job survives a restart of logd (its connection hangs up:
// the shim comes back, hands the pipes to the new logd, and parks again)
// and of the isolator (the new one adopts the job; the shim, parked, does
// not notice): output byte-exact, exit code recorded.
func TestReliabilityParkedShimAcrossRestarts(t *testing.T) {
	s := ownSuite(t, suiteOptions{})
	for _, svc := range []string{"logd", "isolator"} {
		t.Run(svc, func(t *testing.T) {
			n := time.Now().UnixNano() % 1e6
			first, second := fmt.Sprintf("3.%06d", n), fmt.Sprintf("4.%06d", n)
			id := s.detach(t, "sh", "-c", "echo one; sleep "+first+"; echo two; sleep "+second+"; echo three >&2; exit 7")
			status := func() string { return s.field(t, id, "Status") }
			shim := parkedShimOf(t, id, status, "sleep", first)
			s.waitBack(t, svc, s.kill(t, svc))
			if svc == "logd" {
				// Live, not at the job's end: the hung-up connection woke the
				// parked shim, which handed the pipes to the new logd.
				for deadline := time.Now().Add(4 * time.Second); ; time.Sleep(50 * time.Millisecond) {
					l := s.rnx(t, "log", "--no-follow", id)
					if l.code == 0 && l.stdout == "one\ntwo\n" {
						break
					}
					if status() != "RUNNING" || time.Now().After(deadline) {
						t.Fatalf("job %s (%s): the output written after the logd restart is not in its log while it runs: %v",
							id, status(), l)
					}
				}
			}
			if again := parkedShimOf(t, id, status, "sleep", second); again != shim {
				t.Errorf("the job's shim is %d after the %s restart, was %d", again, svc, shim)
			}
			if !s.waitStatus(t, id, "FAILED", 30*time.Second) {
				return
			}
			if got := s.field(t, id, "Exit Code"); got != "7" {
				t.Errorf("exit code %q across the %s restart, want 7", got, svc)
			}
			if l := s.rnx(t, "log", id); l.code != 0 || l.stdout != "one\ntwo\n" || l.stderr != "three\n" {
				t.Errorf("log across the %s restart: %v", svc, l)
			}
		})
	}
}

// parkedShimOf waits until the job's shim, found from its process running
// argv (the command's child: argv → command → init → shim), is parked, and
// returns its pid.
func parkedShimOf(t *testing.T, id string, status func() string, argv ...string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pids := hostProcesses(argv...); len(pids) == 1 {
			shim := ancestor(pids[0], 3)
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", shim))
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", shim))
			if strings.Contains(exe, "memfd:joblet-reaper") && strings.TrimSpace(string(comm)) == "joblet-shim" {
				return shim
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s: its shim %d runs %q (comm %q) 10 s after its start, want the parked shim (memfd:joblet-reaper, comm joblet-shim)",
					id, shim, exe, strings.TrimSpace(string(comm)))
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("job %s: %d processes %v (status %s)", id, len(pids), argv, status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ancestor is pid's parent, n generations up (0 when one is gone).
func ancestor(pid, n int) int {
	for ; n > 0 && pid > 0; n-- {
		p, err := procstat.Read(pid)
		if err != nil {
			return 0
		}
		pid = p.PPid
	}
	return pid
}
