package cli

import (
	"strings"
	"testing"
	"time"
)

func TestScheduledJob(t *testing.T) {
	s := newSuite(t)
	start := time.Now()
	r := s.rnx(t, "run", "--schedule=1h", "echo", "later")
	wantHeader := "ID: 1\nCommand: echo later\nStatus: SCHEDULED\nSchedule Input: 1h\nScheduled Time: 2025-07-11T07:18:54Z\n"
	if r.code != 0 || r.stdout != wantHeader || time.Since(start) > 5*time.Second {
		t.Fatalf("rnx run --schedule: got %+v, want header %q at once", r, wantHeader)
	}
	if got := s.fake.specs[0].GetSchedule(); got != "1h" {
		t.Fatalf("the server got schedule %q", got)
	}

	st := s.rnx(t, "status", "1")
	for _, want := range []string{"Status: SCHEDULED\n", "Schedule Input: 1h\n", "Scheduled Time: 2025-07-11T07:18:54Z\n"} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("rnx status lacks %q:\n%s", want, st.stdout)
		}
	}
	if st := s.rnx(t, "status", "--json", "1"); !strings.Contains(st.stdout, `"scheduled_time": "2025-07-11T07:18:54Z"`) ||
		!strings.Contains(st.stdout, `"schedule_input": "1h"`) {
		t.Errorf("rnx status --json:\n%s", st.stdout)
	}
	if l := s.rnx(t, "list"); !strings.Contains(l.stdout, "1   SCHEDULED  2025-07-11T07:18:54Z  echo later") {
		t.Errorf("rnx list shows no scheduled time:\n%s", l.stdout)
	}

	// Not started: rnx log says so and returns, unless told to follow.
	note := "rnx: job 1 is scheduled for 2025-07-11T07:18:54Z and has not started\n"
	for _, args := range [][]string{{"log", "1"}, {"log", "--no-follow", "1"}} {
		if l := s.rnx(t, args...); l.code != 0 || l.stdout != "" || l.stderr != note {
			t.Errorf("rnx %v: got %+v, want exit 0 and %q", args, l, note)
		}
	}
	followed := make(chan result, 1)
	go func() { followed <- s.rnx(t, "log", "-f", "1") }()
	select {
	case l := <-followed:
		t.Fatalf("rnx log -f returned before the job ended: %+v", l)
	case <-time.After(300 * time.Millisecond):
	}

	if r := s.rnx(t, "stop", "1"); r.code != 0 || r.stdout != "Job 1 canceled\n" {
		t.Fatalf("rnx stop of a scheduled job: %+v", r)
	}
	l := <-followed
	if wantErr := strings.TrimSuffix(note, "\n") + "; waiting for it to start\n"; l.code != 0 || l.stderr != wantErr {
		t.Errorf("rnx log -f: got %+v, want stderr %q", l, wantErr)
	}
	if l := s.rnx(t, "log", "1"); l.code != 0 || l.stderr != "" {
		t.Errorf("rnx log of a canceled job: %+v", l)
	}
}
