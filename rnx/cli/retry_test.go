package cli

import (
	"strings"
	"testing"
	"time"
)

// list and status retry a call refused as unavailable (a helper
// restarting behind the gateway), with a growing wait, and say so once.
func TestReadsRetryUnavailable(t *testing.T) {
	s := newSuite(t)
	if r := s.rnx(t, "run", "echo", "hi"); r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	for _, args := range [][]string{{"list"}, {"status", "1"}} {
		s.fake.mu.Lock()
		s.fake.unavailableReads, s.fake.reads = 3, 0
		s.fake.mu.Unlock()
		start := time.Now()
		r := s.rnx(t, args...)
		took := time.Since(start)
		if r.code != 0 || !strings.Contains(r.stdout, "COMPLETED") {
			t.Errorf("%v: %+v", args, r)
		}
		want := "rnx: joblet at " + s.addr + " is unavailable: isolator is restarting; retrying for up to 1m0s\n"
		if r.stderr != want {
			t.Errorf("%v: stderr %q, want %q once", args, r.stderr, want)
		}
		s.fake.mu.Lock()
		reads := s.fake.reads
		s.fake.mu.Unlock()
		if reads != 4 {
			t.Errorf("%v: %d calls, want 4 (3 refused, then the answer)", args, reads)
		}
		// 100 + 200 + 400 ms of backoff; a fixed long wait would show.
		if took < 700*time.Millisecond || took > 5*time.Second {
			t.Errorf("%v: took %v, want about 0.7 s of backoff", args, took)
		}
		t.Logf("%v answered after 3 refusals in %v", args, took.Round(time.Millisecond))
	}
}

// An attached `rnx run` and `rnx log -f` follow a job across a restart of
// the gateway: every byte once, nothing lost, and they end when the job
// does (stopped: run exits 143, log 0).
func TestFollowSurvivesGatewayRestart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		detached bool // the job is started first, with rnx run -d
		args     []string
		code     int
	}{
		{"run", false, []string{"run", "sleep", "1000"}, 143},
		{"log -f", true, []string{"log", "-f", "1"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSuite(t)
			if tc.detached {
				if r := s.rnx(t, "run", "-d", "sleep", "1000"); r.code != 0 {
					t.Fatalf("run: %+v", r)
				}
			}
			firstOutput := make(chan struct{})
			done := make(chan result)
			go func() {
				done <- s.rnxWith(t, func(e *Env) {
					e.Stdout = &notifyOnWrite{w: e.Stdout, ch: firstOutput}
				}, tc.args...)
			}()
			<-firstOutput
			s.restart(t)
			s.fake.stop(t, "1")
			var r result
			select {
			case r = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("rnx %s did not come back after the gateway restarted", tc.name)
			}
			if r.code != tc.code || r.stdout != "sleeping\n" {
				t.Fatalf("got %+v, want exit %d and the output once", r, tc.code)
			}
			if want := "rnx: lost the connection to joblet at " + s.addr + "; retrying for up to 1m0s\n"; !strings.Contains(r.stderr, want) {
				t.Errorf("stderr = %q, want %q", r.stderr, want)
			}
		})
	}
}

// network list is a read too: it retries while netd restarts.
func TestNetworkListRetriesUnavailable(t *testing.T) {
	s := newSuite(t)
	s.nets.mu.Lock()
	s.nets.unavailableLists = 2
	s.nets.mu.Unlock()
	r := s.rnx(t, "network", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "isolated") {
		t.Fatalf("network list: %+v", r)
	}
	if !strings.Contains(r.stderr, "netd is restarting; retrying for up to 1m0s") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one retry note", r.stderr)
	}
	s.nets.mu.Lock()
	defer s.nets.mu.Unlock()
	if s.nets.lists != 3 {
		t.Errorf("%d calls, want 3 (2 refused, then the answer)", s.nets.lists)
	}
}
