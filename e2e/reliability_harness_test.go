package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The reliability tests of issue 10 (reliability_*_test.go, docs/reliability.md).
// Those that break things on purpose (killing services, flushing rules,
// filling the disk, a "reboot") start a suite of their own in a network
// namespace of their own, so the package's suite and the tests after them
// never see the damage. The helpers here aim rnx at such a suite.

// envReliability selects the size of the reliability tests: "full" is what
// `make reliability` runs (5,000 soak jobs); anything else is the short
// form `make e2e` runs.
const envReliability = "JOBLET_RELIABILITY"

// fullReliability says whether the long form was asked for.
func fullReliability() bool { return os.Getenv(envReliability) == "full" }

// pick returns full in the long form and short otherwise.
func pick(short, full int) int {
	if fullReliability() {
		return full
	}
	return short
}

var netnsSeq atomic.Int64

// newNetns makes a network namespace with lo up, deleted when the test
// ends, and returns its path. It is made inside the package's private
// namespaces, so nothing of it reaches the machine.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("joblet-rel-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v %s", name, err, out)
	}
	return "/run/netns/" + name
}

// ownSuite starts a suite of the test's own, in a fresh network namespace
// unless opt names one, and shuts it down when the test ends with the same
// leak checks as the package's suite.
func ownSuite(t *testing.T, opt suiteOptions) *suite {
	t.Helper()
	if theSuite == nil { // the preconditions (root, binaries) are the package's
		t.Skip(skipReason)
	}
	if opt.netns == "" {
		opt.netns = newNetns(t)
	}
	s, err := launchSuite(theSuite.binDir, opt)
	if err != nil {
		t.Fatalf("start a suite of the test's own: %v", err)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop shuts the suite down (once) and fails the test for what it left.
func (s *suite) stop(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		// Killed by the test, which checked what it meant to; its log
		// stays only for a failure.
		if !t.Failed() {
			_ = os.Remove(s.stderrLog)
		}
		return
	default:
	}
	failed := t.Failed()
	for _, p := range s.shutdown() {
		t.Errorf("the test's suite left something behind: %s", p)
	}
	if failed || t.Failed() {
		t.Logf("last lines of the test's suite log (%s):\n%s", s.stderrLog, s.logTail(60))
	} else {
		_ = os.Remove(s.stderrLog)
	}
}

// rnxCmd is bin/rnx with the admin config, in the suite's namespace.
func (s *suite) rnxCmd(ctx context.Context, args ...string) *exec.Cmd {
	c := s.command(filepath.Join(s.binDir, "rnx"), args...)
	cmd := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+s.adminConfig(), clientMarker+"=leak")
	return cmd
}

// rnx runs bin/rnx against this suite with the admin config.
func (s *suite) rnx(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rnxTimeout)
	defer cancel()
	cmd := s.rnxCmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	r := runCmd(t, ctx, cmd, args)
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

// background is an rnx running while the test does other things.
type background struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

// rnxBackground starts bin/rnx against this suite and returns at once;
// it is killed, if still running, when the test ends.
func (s *suite) rnxBackground(t *testing.T, dir string, args ...string) *background {
	t.Helper()
	b := &background{done: make(chan struct{})}
	b.cmd = s.rnxCmd(context.Background(), args...)
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start rnx %s: %v", strings.Join(args, " "), err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
	})
	return b
}

// wait waits for the rnx to end and returns what it did.
func (b *background) wait(t *testing.T, within time.Duration) result {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(within):
		_ = b.cmd.Process.Kill()
		<-b.done
		t.Errorf("rnx %s: still running after %v; killed", strings.Join(b.cmd.Args, " "), within)
	}
	r := result{stdout: b.stdout.String(), stderr: b.stderr.String()}
	var exitErr *exec.ExitError
	if errors.As(b.err, &exitErr) {
		r.code = exitErr.ExitCode()
	} else if b.err != nil {
		r.code = -1
	}
	return r
}

// run is `rnx run args...`, failing the test unless it exits 0.
func (s *suite) run(t *testing.T, args ...string) (string, result) {
	t.Helper()
	r := s.rnx(t, append([]string{"run"}, args...)...)
	if r.code != 0 {
		t.Fatalf("rnx run %s: %v", strings.Join(args, " "), r)
	}
	return headerID(t, r.stderr), r
}

// detach is `rnx run -d args...` and returns the job's id.
func (s *suite) detach(t *testing.T, args ...string) string {
	t.Helper()
	r := s.rnx(t, append([]string{"run", "-d"}, args...)...)
	if r.code != 0 {
		t.Fatalf("rnx run -d %s: %v", strings.Join(args, " "), r)
	}
	return headerID(t, r.stdout)
}

// field is the value of `Key: value` in `rnx status id` ("" when absent).
func (s *suite) field(t *testing.T, id, key string) string {
	t.Helper()
	r := s.rnx(t, "status", id)
	if r.code != 0 {
		t.Fatalf("rnx status %s: %v", id, r)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `: (.*)$`).FindStringSubmatch(r.stdout)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}

// waitStatus polls until the job is in state want; false (and an error
// in the test) when it is not within the time.
func (s *suite) waitStatus(t *testing.T, id, want string, within time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.field(t, id, "Status")
		if got == want {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("job %s: status %s, want %s within %v", id, got, want, within)
			return false
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// list is `rnx list --json` keyed by job id.
func (s *suite) list(t *testing.T) map[string]map[string]any {
	t.Helper()
	r := s.rnx(t, "list", "--json")
	if r.code != 0 {
		t.Fatalf("rnx list --json: %v", r)
	}
	return jsonJobs(t, r.stdout)
}

// waitBack waits until pids.json names a new live pid for svc and the
// gateway answers `rnx list` again.
func (s *suite) waitBack(t *testing.T, svc string, old int) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < restartTimeout {
		time.Sleep(100 * time.Millisecond)
		pids, err := s.pids()
		switch {
		case err != nil:
			last = err.Error()
		case pids[svc] == old || !processAlive(pids[svc]):
			last = "pids.json still names the old or a dead pid"
		default:
			r := s.rnx(t, "list")
			if r.code == 0 {
				return time.Since(start)
			}
			last = "rnx list: " + r.String()
		}
	}
	t.Fatalf("%s (pid %d) was not back within %v: %s", svc, old, restartTimeout, last)
	return 0
}

// kill SIGKILLs the suite's svc and returns its pid.
func (s *suite) kill(t *testing.T, svc string) int {
	t.Helper()
	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pids[svc], syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", svc, pids[svc], err)
	}
	return pids[svc]
}

// inNetns runs a command in the suite's network namespace and returns its
// combined output.
func (s *suite) inNetns(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := s.command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// countingScript prints n numbered lines, one every 100 ms, then exits code.
func countingScript(n, code int) string {
	return `i=1; while [ $i -le ` + strconv.Itoa(n) + ` ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done; exit ` + strconv.Itoa(code)
}

// countingOutput is what countingScript(n, _) prints.
func countingOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}
