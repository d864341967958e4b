package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestReliabilityRestarts SIGKILLs each service in turn (the supervisor
// starts it again) while, at the moment of the kill, a job streams output
// to an attached `rnx run` and to an `rnx log` follower, another job runs on
// a custom network, an upload is under way and a schedule is waiting. It
// extends TestServiceRestartKeepsRecordsAndLogs (zz_faults_test.go: the
// gateway, logd and the isolator, records and logs) to netd and the
// scheduler and to every kind of work in flight. The invariant: no record
// lost or changed, output byte-exact and once, the schedule runs once,
// the network still there and working, the running jobs finish with their
// exit codes recorded, the followers complete (rnx reconnects), a read
// issued while the service is down is answered (rnx retries), an upload
// either succeeds whole or leaves nothing, and nothing leaks.
func TestReliabilityRestarts(t *testing.T) {
	s := ownSuite(t, suiteOptions{})
	tmp := uploadTempDir(t)
	const netName, netCIDR = "relnet", "10.77.0.0/24"
	if r := s.rnx(t, "network", "create", netName, "--cidr="+netCIDR); r.code != 0 {
		t.Fatalf("network create: %v", r)
	}
	// Big enough to be caught mid-stream: the kill waits until the
	// isolator has received the first bytes.
	blob := make([]byte, 45*mib)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	sum := sha256.Sum256(blob)
	if err := os.WriteFile(filepath.Join(tmp, "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{} // job id → its whole output, for every ended job

	for _, svc := range []string{"gateway", "logd", "isolator", "netd", "scheduler"} {
		t.Run(svc, func(t *testing.T) {
			id, r := s.run(t, "sh", "-c", "seq 3; echo before the "+svc+" dies")
			logs[id] = r.stdout

			const lines, code = 40, 7
			attached := s.rnxBackground(t, "", "run", "sh", "-c", countingScript(lines, code))
			streamer := s.detach(t, "sh", "-c", countingScript(lines, code))
			follower := s.rnxBackground(t, "", "log", streamer)
			onNet := s.detach(t, "--network="+netName, "sh", "-c", "sleep 3; echo still here")
			// Due after the kill and the restart: later with race-built daemons.
			sr := s.rnx(t, "run", fmt.Sprintf("--schedule=%ds", 3*raceFactor()), "echo", "scheduled across the "+svc+" restart")
			if sr.code != 0 {
				t.Fatalf("schedule: %v", sr)
			}
			scheduled := headerID(t, sr.stdout)
			marker := "upload-across-" + svc
			time.Sleep(500 * time.Millisecond) // the jobs under way
			before := s.list(t)
			upload := s.rnxBackground(t, tmp, "run", "--upload=blob", "sh", "-c", "echo "+marker+"; sha256sum /work/blob")
			uploads := filepath.Join(s.devDir, "state", "isolator", "uploads")
			// netd is first called once the upload is in, to attach the
			// job's network: its kill waits for (nearly) the whole upload,
			// so that the attach comes while netd is down.
			killAt := int64(1)
			if svc == "netd" {
				killAt = int64(len(blob)) - mib
			}
			for deadline := time.Now().Add(10 * time.Second); received(uploads) < killAt && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			t.Logf("killing the %s with %d bytes of the upload received", svc, received(uploads))

			old := s.kill(t, svc)
			// rnx retries idempotent reads: one issued right after the kill,
			// while the service is still down, is answered.
			if r := s.rnx(t, "status", id); r.code != 0 {
				t.Errorf("rnx status right after the %s was killed: want an answer (rnx retries reads); got %v", svc, r)
			}
			took := s.waitBack(t, svc, old)
			t.Logf("%s (pid %d) SIGKILLed; back and serving after %v", svc, old, took.Round(time.Millisecond))

			// Records: every one listed before is there, and unchanged
			// unless it was still running or scheduled.
			after := s.list(t)
			for id, rec := range before {
				got, ok := after[id]
				st := jsonString(rec)
				switch {
				case !ok:
					t.Errorf("job %s was listed before the %s died and is gone after: %s", id, svc, st)
				case !strings.Contains(st, "RUNNING") && !strings.Contains(st, "SCHEDULED") && !reflect.DeepEqual(rec, got):
					t.Errorf("job %s changed across the %s restart:\nbefore %s\nafter  %s", id, svc, st, jsonString(got))
				}
			}
			// Output: the attached run and the follower get every line once.
			want := countingOutput(lines)
			if a := attached.wait(t, 30*time.Second); a.code != code || a.stdout != want {
				t.Errorf("attached rnx run across the %s restart: want exit %d and lines 1..%d once; got %v", svc, code, lines, a)
			}
			if f := follower.wait(t, 30*time.Second); f.code != 0 || f.stdout != want {
				t.Errorf("rnx log follower across the %s restart: want lines 1..%d once; got %v", svc, lines, f)
			}
			if s.waitStatus(t, streamer, "FAILED", 15*time.Second) {
				if c := s.field(t, streamer, "Exit Code"); c != fmt.Sprint(code) {
					t.Errorf("job running across the %s restart: exit code %q, want %d", svc, c, code)
				}
				if l := s.rnx(t, "log", streamer); l.stdout != want {
					t.Errorf("job running across the %s restart: rnx log: %v", svc, l)
				}
				logs[streamer] = want
			}
			// The job on the custom network ran on; the network is there and works.
			if s.waitStatus(t, onNet, "COMPLETED", 15*time.Second) {
				if l := s.rnx(t, "log", onNet); l.stdout != "still here\n" {
					t.Errorf("job on %s across the %s restart: %v", netName, svc, l)
				}
				logs[onNet] = "still here\n"
			}
			if nl := s.rnx(t, "network", "list"); !strings.Contains(nl.stdout, netName) || !strings.Contains(nl.stdout, netCIDR) {
				t.Errorf("after the %s restart, network %s is not listed: %v", svc, netName, nl)
			}
			if _, r := s.run(t, "--network="+netName, "cat", "/proc/net/dev"); !strings.Contains(r.stdout, "eth0") {
				t.Errorf("after the %s restart, a job on %s has no eth0: %v", svc, netName, r)
			}
			// The schedule ran, once.
			if s.waitStatus(t, scheduled, "COMPLETED", scaled(20*time.Second)) {
				wantOut := "scheduled across the " + svc + " restart\n"
				if l := s.rnx(t, "log", scheduled); l.stdout != wantOut {
					t.Errorf("scheduled job across the %s restart: rnx log: %v", svc, l)
				}
				logs[scheduled] = wantOut
				n := 0
				for _, rec := range s.list(t) {
					if strings.Contains(jsonString(rec), "scheduled across the "+svc) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("scheduled job across the %s restart: %d records, want 1", svc, n)
				}
			}
			// The upload: whole and right, or refused with nothing left of it.
			// Across a netd or scheduler restart it must succeed: the
			// isolator waits for a restarting netd (jobs.Options.NetdPatience),
			// and an immediate job does not need the scheduler.
			u := upload.wait(t, 60*time.Second)
			wantUp := marker + "\n" + hex.EncodeToString(sum[:]) + "  /work/blob\n"
			if u.code == 0 {
				if u.stdout != wantUp {
					t.Errorf("upload across the %s restart succeeded with the wrong output: %v", svc, u)
				}
			} else if svc == "netd" || svc == "scheduler" {
				t.Errorf("upload across the %s restart failed (exit %d), want it to run: %s", svc, u.code, strings.TrimSpace(u.stderr))
			} else {
				t.Logf("upload across the %s restart failed (exit %d): %s", svc, u.code, strings.TrimSpace(u.stderr))
				if strings.TrimSpace(u.stderr) == "" {
					t.Errorf("upload across the %s restart failed without a word", svc)
				}
				for _, rec := range s.list(t) {
					if st := jsonString(rec); strings.Contains(st, marker) && strings.Contains(st, "RUNNING") {
						t.Errorf("failed upload across the %s restart left a running job: %s", svc, st)
					}
				}
			}
			// Every earlier log intact.
			for id, want := range logs {
				if l := s.rnx(t, "log", id); l.code != 0 || l.stdout != want {
					t.Errorf("after the %s restart: rnx log %s: want %q; got %v", svc, id, want, l)
				}
			}
			s.noUploadsLeft(t)
		})
	}
	// Nothing leaks: with every job ended, no veth but the namespaces
	// netd made ahead (notSpares) is left in the suite's namespace (the
	// processes, cgroups and mounts are checked at shutdown).
	if out := s.inNetns(t, "ip", "-o", "link", "show", "type", "veth"); len(notSpares(t, out)) != 0 {
		t.Errorf("veths left after every job ended:\n%s", out)
	}
}

// noUploadsLeft checks that no upload is half-received and no workspace
// exists for a job that is not running.
func (s *suite) noUploadsLeft(t *testing.T) {
	t.Helper()
	dir := filepath.Join(s.devDir, "state", "isolator")
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := names(t, filepath.Join(dir, "uploads"))
		var stale []string
		jobs := s.list(t)
		for _, w := range names(t, filepath.Join(dir, "work")) {
			if st := jsonString(jobs[w]); !strings.Contains(st, "RUNNING") && !strings.Contains(st, "SCHEDULED") {
				stale = append(stale, w)
			}
		}
		if len(left)+len(stale) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("uploads left: %v; workspaces of jobs not running: %v", left, stale)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
