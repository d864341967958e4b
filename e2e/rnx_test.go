package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rnxTimeout bounds every rnx call, so a hang fails one test instead of the run.
const rnxTimeout = 60 * time.Second

// result is what one rnx call produced.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout: %q\nstderr: %q", r.code, r.took.Round(time.Millisecond), clip(r.stdout), clip(r.stderr))
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:1000] + " ... " + s[len(s)-1000:]
	}
	return s
}

// rnx runs bin/rnx with the admin config.
func rnx(t *testing.T, args ...string) result {
	t.Helper()
	return rnxWith(t, theSuite.adminConfig(), args...)
}

// rnxViewer runs bin/rnx with the viewer config.
func rnxViewer(t *testing.T, args ...string) result {
	t.Helper()
	return rnxWith(t, theSuite.viewerConfig(), args...)
}

// rnxWith runs bin/rnx with RNX_CONFIG=config and returns its output.
func rnxWith(t *testing.T, config string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	r := runRNX(t, config, &out, &errb, args...)
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

// runRNX runs bin/rnx with stdout going to w; stderr is returned.
func runRNX(t *testing.T, config string, stdout, stderr io.Writer, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rnxTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(theSuite.binDir, "rnx"), args...)
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+config, clientMarker+"=leak")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return runCmd(t, ctx, cmd, args)
}

// runCmd runs an rnx command made with ctx (rnxTimeout) and returns how
// long it took and its exit code; a run that does not end in time, or does
// not start, fails the test.
func runCmd(t *testing.T, ctx context.Context, cmd *exec.Cmd, args []string) result {
	t.Helper()
	start := time.Now()
	err := cmd.Run()
	r := result{took: time.Since(start)}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("rnx %s: no answer within %v", strings.Join(args, " "), rnxTimeout)
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("rnx %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// hashed is the sha256 and length of a stream.
type hashed struct {
	sum string
	n   int64
}

func (h hashed) String() string { return fmt.Sprintf("%d bytes, sha256 %s", h.n, h.sum) }

// hashWriter hashes everything written to it.
type hashWriter struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func newHashWriter() *hashWriter { return &hashWriter{h: sha256.New()} }

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

func (w *hashWriter) result() hashed {
	return hashed{sum: hex.EncodeToString(w.h.Sum(nil)), n: w.n}
}

// rnxHashed runs rnx with the admin config, hashing its stdout instead of keeping it.
func rnxHashed(t *testing.T, args ...string) (hashed, result) {
	t.Helper()
	hw := newHashWriter()
	var errb bytes.Buffer
	r := runRNX(t, theSuite.adminConfig(), hw, &errb, args...)
	r.stderr = errb.String()
	return hw.result(), r
}

// localHashed runs a command on the host and hashes its stdout.
func localHashed(t *testing.T, name string, args ...string) hashed {
	t.Helper()
	hw := newHashWriter()
	cmd := exec.Command(name, args...)
	cmd.Stdout = hw
	if err := cmd.Run(); err != nil {
		t.Fatalf("local %s %v: %v", name, args, err)
	}
	return hw.result()
}

var idLine = regexp.MustCompile(`(?m)^ID: (\S+)$`)

// headerID returns the job id from a job header (`ID: <id>` on its own line).
func headerID(t *testing.T, header string) string {
	t.Helper()
	m := idLine.FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("no `ID: <id>` line in the job header %q", clip(header))
	}
	return m[1]
}

// mustRun runs `rnx run args...` and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) (id string, r result) {
	t.Helper()
	r = rnx(t, append([]string{"run"}, args...)...)
	if r.code != 0 {
		t.Fatalf("rnx run %s: %v", strings.Join(args, " "), r)
	}
	return headerID(t, r.stderr), r
}

// detach starts a job with `rnx run -d` and returns its id.
func detach(t *testing.T, args ...string) string {
	t.Helper()
	r := rnx(t, append([]string{"run", "-d"}, args...)...)
	if r.code != 0 {
		t.Fatalf("rnx run -d %s: %v", strings.Join(args, " "), r)
	}
	return headerID(t, r.stdout)
}

// stopJob stops a job with the admin config, failing the test if rnx fails.
func stopJob(t *testing.T, id string) {
	t.Helper()
	if r := rnx(t, "stop", id); r.code != 0 {
		t.Fatalf("rnx stop %s: %v", id, r)
	}
}

var statusLine = regexp.MustCompile(`(?m)^Status:\s*(\S+)`)

// jobStatus returns the Status: line of `rnx status id`.
func jobStatus(t *testing.T, id string) string {
	t.Helper()
	r := rnx(t, "status", id)
	if r.code != 0 {
		t.Fatalf("rnx status %s: %v", id, r)
	}
	m := statusLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("rnx status %s: no `Status:` line: %v", id, r)
	}
	return m[1]
}

// waitStatus polls `rnx status` until the job is in state want.
func waitStatus(t *testing.T, id, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := jobStatus(t, id)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) >= within {
			t.Fatalf("job %s: status %s after %v, want %s within %v", id, got, time.Since(start).Round(time.Millisecond), want, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listRow finds the job's row in the `rnx list` table (ID is the first column).
func listRow(t *testing.T, table, id string) []string {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == id {
			return f
		}
	}
	t.Fatalf("job %s is not in `rnx list`:\n%s", id, clip(table))
	return nil
}

// jsonJobs parses `rnx list --json` into records keyed by job id. Whatever
// the exact shape (a list, or an object holding one), a record is an object
// with an id field.
func jsonJobs(t *testing.T, out string) map[string]map[string]any {
	t.Helper()
	jobs, err := parseJobs(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, clip(out))
	}
	return jobs
}

func parseJobs(out string) (map[string]map[string]any, error) {
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("rnx list --json is not JSON: %w", err)
	}
	jobs := map[string]map[string]any{}
	collectJobs(v, jobs)
	return jobs, nil
}

func collectJobs(v any, into map[string]map[string]any) {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			collectJobs(e, into)
		}
	case map[string]any:
		if id := jobIDField(v); id != "" {
			into[id] = v
			return
		}
		for _, e := range v {
			collectJobs(e, into)
		}
	}
}

func jobIDField(m map[string]any) string {
	for _, k := range []string{"id", "ID", "Id", "job_id", "jobId", "JobID"} {
		switch id := m[k].(type) {
		case string:
			return id
		case float64:
			return fmt.Sprint(int64(id))
		}
	}
	return ""
}

// listJSON returns the job records from `rnx list --json`.
func listJSON(t *testing.T) map[string]map[string]any {
	t.Helper()
	r := rnx(t, "list", "--json")
	if r.code != 0 {
		t.Fatalf("rnx list --json: %v", r)
	}
	return jsonJobs(t, r.stdout)
}

// hostProcesses lists the host pids whose argv is exactly argv.
func hostProcesses(argv ...string) []int {
	want := strings.Join(argv, "\x00") + "\x00"
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && string(b) == want && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// oneLine fails unless msg is exactly one non-empty line.
func oneLine(t *testing.T, what, msg string) {
	t.Helper()
	m := strings.TrimRight(msg, "\n")
	if m == "" || strings.Contains(m, "\n") {
		t.Errorf("%s: want one line on stderr, got %q", what, msg)
	}
}

// jsonString renders a decoded JSON value back as text, for matching and messages.
func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
