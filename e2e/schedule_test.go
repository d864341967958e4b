package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Scheduled jobs (issue 5), driven through bin/rnx against the suite's
// joblet-scheduler.

// needScheduler returns the running suite, or skips the test when the
// supervisor does not run joblet-scheduler.
func needScheduler(t *testing.T) *suite {
	t.Helper()
	s := needSuite(t)
	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	if pids["scheduler"] <= 0 {
		t.Skip("the supervisor runs no joblet-scheduler (no \"scheduler\" in pids.json)")
	}
	return s
}

var scheduledTimeLine = regexp.MustCompile(`(?m)^Scheduled Time: (\S+)$`)

// schedule runs `rnx run --schedule=spec args...`, checks that it returns
// at once with the scheduled job's header, and returns the id and due time.
func schedule(t *testing.T, spec string, args ...string) (string, time.Time) {
	t.Helper()
	r := rnx(t, append([]string{"run", "--schedule=" + spec}, args...)...)
	if r.code != 0 {
		t.Fatalf("rnx run --schedule=%s: %v", spec, r)
	}
	if r.took > 3*time.Second {
		t.Errorf("rnx run --schedule=%s took %v; a scheduled run returns at once", spec, r.took)
	}
	id := headerID(t, r.stdout)
	for _, want := range []string{"\nCommand: " + strings.Join(args, " ") + "\n", "\nStatus: SCHEDULED\n", "\nSchedule Input: " + spec + "\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("rnx run --schedule=%s: header lacks %q:\n%s", spec, strings.TrimSpace(want), r.stdout)
		}
	}
	m := scheduledTimeLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("rnx run --schedule=%s: no `Scheduled Time:` line:\n%s", spec, r.stdout)
	}
	due, err := time.Parse(time.RFC3339, m[1])
	if err != nil || !strings.HasSuffix(m[1], "Z") {
		t.Fatalf("Scheduled Time %q is not an RFC3339 UTC time: %v", m[1], err)
	}
	return id, due
}

// statusJSON returns `rnx status --json id`.
func statusJSON(t *testing.T, id string) map[string]any {
	t.Helper()
	r := rnx(t, "status", "--json", id)
	if r.code != 0 {
		t.Fatalf("rnx status --json %s: %v", id, r)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("rnx status --json %s: %v\n%s", id, err, r.stdout)
	}
	return m
}

// jsonTime reads an RFC3339 time field of a JSON job record.
func jsonTime(t *testing.T, rec map[string]any, key string) time.Time {
	t.Helper()
	s, _ := rec[key].(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s of job %v: %q: %v", key, rec["id"], s, err)
	}
	return ts
}

// startLag is how long after its scheduled time a job started.
func startLag(t *testing.T, rec map[string]any) time.Duration {
	t.Helper()
	return jsonTime(t, rec, "start_time").Sub(jsonTime(t, rec, "scheduled_time"))
}

func TestScheduledJobRunsAtItsTime(t *testing.T) {
	needScheduler(t)
	before := time.Now()
	// Far enough ahead for the checks below before it runs (4 rnx calls:
	// slower with race-built daemons).
	in := 3 * raceFactor()
	id, due := schedule(t, fmt.Sprintf("%ds", in), "sh", "-c", "echo scheduled $JOB_ID")
	if d := due.Sub(before); d < time.Duration(in-1)*time.Second || d > time.Duration(in+2)*time.Second {
		t.Errorf("--schedule=%ds is due %v after the request", in, d)
	}
	// A follower started now waits for the job and prints its output.
	followed := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		r := runRNX(t, theSuite.adminConfig(), &out, &errb, "log", "-f", id)
		r.stdout, r.stderr = out.String(), errb.String()
		followed <- r
	}()

	if st := jobStatus(t, id); st != "SCHEDULED" {
		t.Fatalf("status %s, want SCHEDULED", st)
	}
	if r := rnx(t, "status", id); !strings.Contains(r.stdout, "Scheduled Time: "+due.UTC().Format(time.RFC3339)) {
		t.Errorf("rnx status of a scheduled job shows no scheduled time:\n%s", r.stdout)
	}
	if row := listRow(t, rnx(t, "list").stdout, id); len(row) < 3 || row[1] != "SCHEDULED" || row[2] != due.UTC().Format(time.RFC3339) {
		t.Errorf("rnx list row %q, want SCHEDULED at %s", row, due.UTC().Format(time.RFC3339))
	}
	l := rnx(t, "log", id)
	if l.code != 0 || l.stdout != "" || !strings.Contains(l.stderr, "job "+id+" is scheduled for ") || !strings.Contains(l.stderr, "has not started") {
		t.Errorf("rnx log of a scheduled job: want exit 0 and a note that it has not started; got %v", l)
	}
	oneLine(t, "rnx log of a scheduled job", l.stderr)

	waitStatus(t, id, "COMPLETED", time.Until(due)+10*time.Second)
	rec := statusJSON(t, id)
	lag := startLag(t, rec)
	t.Logf("due %s, started %v after", due.Format(time.RFC3339Nano), lag)
	if lag < 0 || lag > time.Second {
		t.Errorf("started %v after its scheduled time, want within 1s", lag)
	}
	want := "scheduled " + id + "\n"
	if r := rnx(t, "log", id); r.code != 0 || r.stdout != want {
		t.Errorf("rnx log %s: want %q; got %v", id, want, r)
	}
	select {
	case f := <-followed:
		if f.code != 0 || f.stdout != want || !strings.Contains(f.stderr, "waiting for it to start") {
			t.Errorf("rnx log -f of a scheduled job: want %q after a note; got %v", want, f)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("rnx log -f did not end with the job")
	}
}

func TestStopCancelsScheduledJob(t *testing.T) {
	needScheduler(t)
	id, due := schedule(t, fmt.Sprintf("%ds", 2*raceFactor()), "echo", "must not run")
	if r := rnx(t, "stop", id); r.code != 0 || r.stdout != "Job "+id+" canceled\n" {
		t.Fatalf("rnx stop of a scheduled job: %v", r)
	}
	if st := jobStatus(t, id); st != "CANCELED" {
		t.Fatalf("status %s after stop, want CANCELED", st)
	}
	time.Sleep(time.Until(due) + 1500*time.Millisecond)
	rec := statusJSON(t, id)
	if rec["status"] != "CANCELED" || rec["start_time"] != nil {
		t.Errorf("after its time: %s, want CANCELED and never started", jsonString(rec))
	}
	if r := rnx(t, "log", id); r.code != 0 || r.stdout != "" {
		t.Errorf("rnx log of a canceled job: %v", r)
	}
	if r := rnx(t, "stop", id); r.code != 0 || r.stdout != "Job "+id+" canceled\n" {
		t.Errorf("second rnx stop: %v", r)
	}
}

func TestBadSchedulesRefused(t *testing.T) {
	needScheduler(t)
	before := len(listJSON(t))
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, spec := range []string{"5 minutes", "-5m", "0s", "2024-02-30T10:00:00", past, "2y", "1e3h"} {
		r := rnx(t, "run", "--schedule="+spec, "true")
		if r.code == 0 || !strings.Contains(r.stderr, "schedule") {
			t.Errorf("--schedule=%q: want a non-zero exit and an error about the schedule; got %v", spec, r)
		}
		oneLine(t, "--schedule="+spec, r.stderr)
	}
	if after := len(listJSON(t)); after != before {
		t.Errorf("refused schedules made %d jobs", after-before)
	}
}

// Jobs that fall due while the scheduler is down run once when it is back,
// late, and the ones due later run on time.
func TestSchedulerRestartRunsEachJobOnce(t *testing.T) {
	s := needScheduler(t)
	type job struct {
		id  string
		due time.Time
	}
	var jobs []job
	// The first two fall due while the scheduler is frozen, the third after
	// it is back: further apart with race-built daemons, so that the three
	// schedules are in before the freeze.
	f := raceFactor()
	for _, spec := range []string{fmt.Sprintf("%ds", 2*f), fmt.Sprintf("%ds", 3*f), fmt.Sprintf("%ds", 3*f+11)} {
		id, _ := schedule(t, spec, "sh", "-c", "echo once $JOB_ID")
		// The header shows whole seconds; the record has the instant.
		jobs = append(jobs, job{id, jsonTime(t, statusJSON(t, id), "scheduled_time")})
	}
	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	old := pids["scheduler"]
	// Frozen, then killed once the first two are due: they fall due while
	// the scheduler cannot fire them.
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop the scheduler (pid %d): %v", old, err)
	}
	// A test that stops early must not leave the suite's scheduler frozen
	// for the tests after it.
	t.Cleanup(func() { _ = syscall.Kill(old, syscall.SIGCONT) })
	time.Sleep(time.Until(jobs[1].due) + 1500*time.Millisecond)
	for _, j := range jobs[:2] {
		if st := jobStatus(t, j.id); st != "SCHEDULED" {
			t.Fatalf("job %s is %s while the scheduler is down", j.id, st)
		}
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the scheduler (pid %d): %v", old, err)
	}
	killed := time.Now()
	waitRestarted(t, s, "scheduler", old)
	t.Logf("scheduler back after %v", time.Since(killed).Round(time.Millisecond))

	for i, j := range jobs {
		waitStatus(t, j.id, "COMPLETED", time.Until(j.due)+15*time.Second)
		rec := statusJSON(t, j.id)
		lag := startLag(t, rec)
		t.Logf("job %s: due %s, started %v after, reason %q", j.id, j.due.Format(time.RFC3339), lag, rec["reason"])
		if i < 2 && !strings.Contains(fmt.Sprint(rec["reason"]), "late") {
			t.Errorf("job %s started %v late but its record does not say so: %s", j.id, lag, jsonString(rec))
		}
		if i == 2 && (lag < 0 || lag > time.Second) {
			t.Errorf("job %s, due after the restart, started %v after its time", j.id, lag)
		}
		if r := rnx(t, "log", j.id); r.code != 0 || r.stdout != "once "+j.id+"\n" {
			t.Errorf("job %s ran other than once: rnx log: %v", j.id, r)
		}
	}
}

// 200 jobs due in the same second all run.
func TestManyJobsDueTogether(t *testing.T) {
	needScheduler(t)
	const n, workers = 200, 24
	// Far enough ahead that 200 rnx runs fit before it, even while other
	// tests load the machine (about 4 s alone, 11 s seen under load).
	due := time.Now().Add(scaled(20 * time.Second)).Truncate(time.Second).UTC()
	spec := due.Format(time.RFC3339)

	var (
		mu   sync.Mutex
		ids  = map[string]bool{}
		errs []string
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for range next {
				id, err := detachQuiet("run", "-d", "--schedule="+spec, "true")
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
				} else {
					ids[id] = true
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d jobs scheduled for %s in %v", len(ids), spec, time.Since(start).Round(time.Millisecond))
	if len(errs) > 0 {
		t.Fatalf("%d of %d runs failed; first: %s", len(errs), n, errs[0])
	}
	if time.Now().After(due) {
		t.Fatalf("scheduling %d jobs took until after their time; the test cannot tell anything", n)
	}

	deadline := due.Add(60 * time.Second)
	var pending []string
	for {
		jobs := listJSON(t)
		pending = pending[:0]
		var last time.Time
		for id := range ids {
			rec := jobs[id]
			if rec["status"] != "COMPLETED" {
				pending = append(pending, fmt.Sprintf("%s %v", id, rec["status"]))
				continue
			}
			if got := jsonTime(t, rec, "scheduled_time"); !got.Equal(due) {
				t.Fatalf("job %s is scheduled for %v, want %v", id, got, due)
			}
			if st := jsonTime(t, rec, "start_time"); st.Before(due) {
				t.Fatalf("job %s started at %v, before its time %v", id, st, due)
			} else if st.After(last) {
				last = st
			}
		}
		if len(pending) == 0 {
			t.Logf("all %d started; the last %v after their time", n, last.Sub(due).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs not COMPLETED %v after their time, e.g. %v", len(pending), n, time.Since(due).Round(time.Second), pending[:min(5, len(pending))])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// detachQuiet runs bin/rnx with the admin config and returns the job id
// from the header it prints. Unlike rnx it never calls t.Fatal, so it may
// run on any goroutine.
func detachQuiet(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rnxTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(theSuite.binDir, "rnx"), args...)
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+theSuite.adminConfig())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("rnx %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	m := idLine.FindStringSubmatch(out.String())
	if m == nil {
		return "", fmt.Errorf("rnx %s: no ID line in %q", strings.Join(args, " "), out.String())
	}
	return m[1], nil
}
