package cli

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/clientconfig"
)

const header1 = "ID: 1\nCommand: echo hi there\nStatus: RUNNING\nStartTime: 2025-07-11T06:18:54Z\n"

func TestRunAttachesAndStreams(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "run", "echo", "hi", "there")
	if r.code != 0 || r.stdout != "hi there\n" || r.stderr != header1 {
		t.Fatalf("got %+v\nwant code 0, stdout %q, stderr %q", r, "hi there\n", header1)
	}
}

func TestRunExitsWithJobCode(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "run", "exit", "3")
	if r.code != 3 || r.stdout != "out\n" || !strings.HasSuffix(r.stderr, "StartTime: 2025-07-11T06:18:54Z\nerr\n") {
		t.Fatalf("got %+v, want exit 3, out on stdout, err after the header on stderr", r)
	}
}

func TestRunPassesFlagsAfterCommand(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "run", "--max-cpu=50", "--cpu-cores", "0-1", "--name", "lister", "ls", "-la", "--max-cpu=7")
	if r.code != 0 {
		t.Fatalf("got %+v", r)
	}
	spec := s.fake.specs[0]
	if spec.GetCommand() != "ls" || !slices.Equal(spec.GetArgs(), []string{"-la", "--max-cpu=7"}) {
		t.Errorf("server got %s %q, want ls [-la --max-cpu=7]", spec.GetCommand(), spec.GetArgs())
	}
	if l := spec.GetLimits(); l.GetMaxCpuPercent() != 50 || l.GetCpuCores() != "0-1" || spec.GetName() != "lister" {
		t.Errorf("server got limits %v name %q", l, spec.GetName())
	}
}

func TestRunDetachPrintsHeaderOnStdout(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "run", "-d", "sleep", "30")
	want := "ID: 1\nCommand: sleep 30\nStatus: RUNNING\nStartTime: 2025-07-11T06:18:54Z\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("got %+v, want stdout %q", r, want)
	}

	r = s.rnx(t, "list")
	wantList := "ID  STATUS   START TIME            COMMAND\n" +
		"1   RUNNING  2025-07-11T06:18:54Z  sleep 30\n"
	if r.code != 0 || r.stdout != wantList {
		t.Fatalf("list: got %+v\nwant %q", r, wantList)
	}

	r = s.rnx(t, "stop", "1")
	if r.code != 0 || r.stdout != "Job 1 stopped\n" {
		t.Fatalf("stop: got %+v", r)
	}
	r = s.rnx(t, "status", "1")
	wantStatus := "Job ID: 1\nCommand: sleep 30\nStatus: STOPPED\n" +
		"Created: 2025-07-11T06:18:54Z\nStarted: 2025-07-11T06:18:54Z\nEnded: 2025-07-11T06:19:54Z\n" +
		"Duration: 1m0s\nExit Code: 143\nSignal: 15\nReason: stopped by user\n"
	if r.code != 0 || r.stdout != wantStatus {
		t.Fatalf("status: got %+v\nwant %q", r, wantStatus)
	}
}

func TestRunInterruptStopsJobAndWaits(t *testing.T) {
	s := newSuite(t)
	sigs := make(chan os.Signal, 1)
	r := s.rnxWith(t, func(e *Env) {
		e.Signals = func() (<-chan os.Signal, func()) { return sigs, func() {} }
		// Interrupt once the job's first output has arrived.
		e.Stdout = &signalOnWrite{w: e.Stdout, sigs: sigs}
	}, "run", "sleep", "1000")
	if r.code != 143 {
		t.Fatalf("got %+v, want exit 143", r)
	}
	if got := s.fake.stopped(); !slices.Equal(got, []string{"1"}) {
		t.Errorf("StopJob calls = %v, want [1]", got)
	}
	if !strings.Contains(r.stderr, "rnx: interrupt: stopping job 1 and waiting for it to end") ||
		!strings.Contains(r.stderr, "rnx: job 1 was killed by signal 15: stopped by user\n") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if r.stdout != "sleeping\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
}

// signalOnWrite sends SIGINT after the first write.
type signalOnWrite struct {
	w    io.Writer
	sigs chan os.Signal
	sent bool
}

func (s *signalOnWrite) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if !s.sent {
		s.sent = true
		s.sigs <- syscall.SIGINT
	}
	return n, err
}

func TestRunResumesAfterLostStream(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "run", "flaky")
	if r.code != 0 || r.stdout != "a\nc\n" {
		t.Fatalf("got %+v, want a and c once on stdout", r)
	}
	wantErr := "b\nrnx: joblet at " + s.addr + " is unavailable: logd is restarting; retrying for up to 1m0s\n"
	if !strings.HasSuffix(r.stderr, wantErr) {
		t.Errorf("stderr = %q, want suffix %q", r.stderr, wantErr)
	}
}

// notifyOnWrite closes ch after the first write.
type notifyOnWrite struct {
	w    io.Writer
	ch   chan struct{}
	once sync.Once
}

func (n *notifyOnWrite) Write(p []byte) (int, error) {
	defer n.once.Do(func() { close(n.ch) })
	return n.w.Write(p)
}

func TestRunFailedToStart(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "run", "missing")
	if r.code != 127 || r.stdout != "" || !strings.HasSuffix(r.stderr, "Status: FAILED\nrnx: job 1 failed: command not found: missing\n") {
		t.Fatalf("got %+v", r)
	}
	r = s.rnx(t, "run", "notexec")
	if r.code != 126 || !strings.HasSuffix(r.stderr, "rnx: job 2 failed: cannot execute: notexec\n") {
		t.Fatalf("got %+v", r)
	}
	// Detached, the header goes to stdout as for any job, and the exit
	// code still says the job did not start.
	r = s.rnx(t, "run", "-d", "missing")
	if r.code != 127 || !strings.Contains(r.stdout, "ID: 3") || !strings.HasSuffix(r.stderr, "rnx: job 3 failed: command not found: missing\n") {
		t.Fatalf("detached: got %+v", r)
	}
}

func TestRunBigOutputByteExact(t *testing.T) {
	s := newSuite(t)
	const n = 8 << 20
	start := time.Now()
	r := s.rnx(t, "run", "big", "8388608")
	if r.code != 0 || len(r.stdout) != n || r.stdout != string(bigOutput(n)) {
		t.Fatalf("exit %d, %d bytes of stdout; want 0 and %d exact bytes", r.code, len(r.stdout), n)
	}
	t.Logf("8 MiB in %v", time.Since(start))
}

func TestTerminalOutputIsSanitized(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "run", "evil")
	if r.stdout != "\x1b]0;pwned\x07hi\n" {
		t.Errorf("to a pipe: stdout = %q, want the bytes untouched", r.stdout)
	}
	r = s.rnxWith(t, func(e *Env) { e.IsTerminal = func(io.Writer) bool { return true } }, "log", "1")
	if r.stdout != "^[]0;pwned^Ghi\n" {
		t.Errorf("to a terminal: stdout = %q, want escapes made visible", r.stdout)
	}
}

func TestLogSplitsStreams(t *testing.T) {
	s := newSuite(t)
	s.rnx(t, "run", "-d", "exit", "4")
	for _, args := range [][]string{{"log", "1"}, {"log", "--no-follow", "1"}, {"log", "--follow=false", "1"}} {
		r := s.rnx(t, args...)
		if r.code != 0 || r.stdout != "out\n" || r.stderr != "err\n" {
			t.Errorf("%v: got %+v", args, r)
		}
	}
}

func TestJSONOutput(t *testing.T) {
	s := newSuite(t)
	if r := s.rnx(t, "list", "--json"); r.stdout != "[]\n" {
		t.Errorf("empty list --json = %q", r.stdout)
	}
	if r := s.rnx(t, "list"); r.stdout != "No jobs found\n" {
		t.Errorf("empty list = %q", r.stdout)
	}
	s.rnx(t, "run", "echo", "x")
	r := s.rnx(t, "status", "--json", "1")
	for _, want := range []string{`"id": "1"`, `"status": "COMPLETED"`, `"exit_code": 0`, `"args": [`, `"end_time": "2025-07-11T06:18:55.5Z"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status --json lacks %s:\n%s", want, r.stdout)
		}
	}
}

func TestViewerPermissionDenied(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "--node", "viewer", "run", "echo", "hi")
	if r.code != 1 || r.stderr != "rnx: permission denied: role viewer may not call RunJob\n" {
		t.Fatalf("got %+v", r)
	}
	r = s.rnxWith(t, func(e *Env) {
		e.Getenv = func(k string) string { return map[string]string{"JOBLET_NODE": "viewer"}[k] }
	}, "stop", "1")
	if r.code != 1 || r.stderr != "rnx: permission denied: role viewer may not call StopJob\n" {
		t.Fatalf("JOBLET_NODE=viewer stop: got %+v", r)
	}
	if r := s.rnx(t, "--node", "viewer", "list"); r.code != 0 {
		t.Fatalf("viewer list: got %+v", r)
	}
}

func TestErrors(t *testing.T) {
	s := newSuite(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"status", "42"}, 1, "rnx: job 42 not found\n"},
		{[]string{"log", "42"}, 1, "rnx: job 42 not found\n"},
		{[]string{"stop", "42"}, 1, "rnx: job 42 not found\n"},
		{[]string{"status", "4\x1b2"}, 2, "rnx: invalid job id \"4^[2\"\n"},
		{[]string{"status"}, 2, "rnx: status: want one JOB_ID (usage: rnx status JOB_ID [flags])\n"},
		{[]string{"run"}, 2, "rnx: run: no command given (usage: rnx run [flags] CMD [ARGS...])\n"},
		{[]string{"run", "--max-memory=-1", "x"}, 2, "rnx: --max-memory must not be negative (got -1)\n"},
		{[]string{"run", "--cpu-cores=3-1", "x"}, 2, "rnx: --cpu-cores \"3-1\": range \"3-1\" runs backwards\n"},
		{[]string{"run", "--max-cpu=lots", "x"}, 2, "rnx: invalid argument \"lots\" for \"--max-cpu\" flag: strconv.ParseInt: parsing \"lots\": invalid syntax\n"},
		{[]string{"run", "unavailable"}, 1, "rnx: joblet at " + s.addr + " is unavailable: isolator is not answering\n"},
		{[]string{"frobnicate"}, 2, "rnx: unknown command \"frobnicate\" for \"rnx\"\n"},
		{[]string{"--node", "nope", "list"}, 1, "rnx: node \"nope\" is not in the config (have: [default down viewer])\n"},
	} {
		r := s.rnx(t, tc.args...)
		if r.code != tc.code || r.stderr != tc.stderr || r.stdout != "" {
			t.Errorf("rnx %q: got code %d stdout %q stderr %q\nwant code %d stderr %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stderr)
		}
	}
	if len(s.fake.specs) != 0 || s.fake.nextID != 0 {
		t.Errorf("bad run flags reached the server: %v", s.fake.specs)
	}
}

func TestConnectionRefused(t *testing.T) {
	s := newSuite(t)
	// A read retries a gateway it never reached for firstContactWindow (a
	// restarting gateway is back well within it), says so once, then
	// gives the reason.
	start := time.Now()
	r := s.rnx(t, "--node", "down", "list")
	took := time.Since(start)
	addr := regexp.MustCompile(`127\.0\.0\.1:\d+`).FindString(r.stderr)
	want := "rnx: cannot reach joblet at " + addr + ": connection refused — is the suite running? (make run)\n"
	if r.code != 1 || addr == "" || r.stderr != strings.TrimSuffix(want, "\n")+"; retrying for up to 3s\n"+want {
		t.Fatalf("got %+v, want the retry note then %q", r, want)
	}
	if took < firstContactWindow || took > firstContactWindow+3*time.Second {
		t.Errorf("list against a closed port gave up after %v, want about %v", took, firstContactWindow)
	}
	// What changes something is never retried: it fails at once.
	start = time.Now()
	for _, args := range [][]string{{"run", "true"}, {"stop", "1"}} {
		if r := s.rnx(t, append([]string{"--node", "down"}, args...)...); r.code != 1 || r.stderr != want {
			t.Errorf("%v: got %+v, want %q", args, r, want)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failing against a closed port took %v", d)
	}
}

func TestServerFromAnotherCA(t *testing.T) {
	s := newSuite(t)
	other := mustCA(t)
	pair, err := other.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientconfig.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Nodes["default"].Address = serve(t, other, pair, s.fake)
	if err := clientconfig.Save(cfg, s.config); err != nil {
		t.Fatal(err)
	}
	r := s.rnx(t, "list")
	if r.code != 1 || !strings.HasSuffix(r.stderr, ": its certificate is not signed by the CA in your rnx config\n") {
		t.Fatalf("got %+v", r)
	}
}

func TestClientCertFromAnotherCARefused(t *testing.T) {
	s := newSuite(t)
	cfg, err := clientconfig.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	stranger := node(t, mustCA(t), s.addr, certs.RoleAdmin)
	cfg.Nodes["default"].Cert, cfg.Nodes["default"].Key = stranger.Cert, stranger.Key
	if err := clientconfig.Save(cfg, s.config); err != nil {
		t.Fatal(err)
	}
	r := s.rnx(t, "list")
	// The alert names the cause when it arrives before the socket closes.
	if r.code != 1 || !strings.Contains(r.stderr, ": check the client certificate in your rnx config (signed by the server's CA, not expired, with a role)") ||
		strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("got %+v", r)
	}
}

func TestNodes(t *testing.T) {
	s := newSuite(t)
	cfg, err := clientconfig.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	r := s.rnx(t, "--node", "viewer", "nodes")
	want := "Available nodes in configuration:\n" +
		"  - default (" + s.addr + ")\n" +
		"  - down (" + cfg.Nodes["down"].Address + ")\n" +
		"  * viewer (" + s.addr + ")\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("got %+v\nwant %q", r, want)
	}
}

func TestConfigHelp(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "config-help")
	for _, want := range []string{"nodes:", "address:", "$RNX_CONFIG", ".dev/rnx-admin.yml", "/opt/joblet/config/rnx-config.yml"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config-help lacks %q", want)
		}
	}
}

// TestRunWaitsForTheRecordInOneCall: the job's record ends some time after
// its output; rnx asks once with wait and gets the final record, and a
// server that ignores wait (older) is polled until the record is final.
func TestRunWaitsForTheRecordInOneCall(t *testing.T) {
	for _, old := range []bool{false, true} {
		s := newSuite(t)
		s.fake.mu.Lock()
		s.fake.oldServer = old
		s.fake.mu.Unlock()
		r := s.rnx(t, "run", "slowend", "300")
		s.fake.mu.Lock()
		reads := s.fake.reads
		s.fake.mu.Unlock()
		if r.code != 0 || r.stdout != "ran\n" {
			t.Fatalf("old server %v: got %+v, want ran and exit 0", old, r)
		}
		switch {
		case !old && reads != 1:
			t.Errorf("%d status calls, want 1 that waits", reads)
		case old && reads < 3:
			t.Errorf("old server: %d status calls; rnx did not poll until the record was final", reads)
		}
	}
}

// TestRunAsksForTheEndWhileStreaming: an attached run has its status call
// (with wait) at the server while the job still runs, and the answer to
// that one call, sent when the job ends, is the exit code: no question is
// left to ask once the output has ended.
func TestRunAsksForTheEndWhileStreaming(t *testing.T) {
	s := newSuite(t)
	asked := make(chan bool, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			s.fake.mu.Lock()
			reads := s.fake.reads
			s.fake.mu.Unlock()
			if reads > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		s.fake.mu.Lock()
		asked <- s.fake.reads == 1 // the job (id 1) is still running here
		s.fake.mu.Unlock()
		for {
			if _, err := s.fake.get("1"); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		s.fake.stop(t, "1")
	}()
	r := s.rnx(t, "run", "sleep", "1000")
	if !<-asked {
		t.Error("no status call reached the server while the job ran")
	}
	if r.code != 143 || r.stdout != "sleeping\n" {
		t.Fatalf("got %+v, want sleeping and exit 143", r)
	}
	s.fake.mu.Lock()
	reads := s.fake.reads
	s.fake.mu.Unlock()
	if reads != 1 {
		t.Errorf("%d status calls, want the one made while the job ran", reads)
	}
}
