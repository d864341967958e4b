package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The knobs the harness reads from its environment.
const (
	envBinDir   = "JOBLET_BIN_DIR"      // where the five binaries are (default ../bin)
	envRequired = "JOBLET_E2E_REQUIRED" // "1": a missing precondition fails instead of skipping
)

// supervisorMarker is set in the supervisor's environment only; no job may see it.
const supervisorMarker = "JOBLET_E2E_MARKER"

// clientMarker is set in rnx's environment only; no job may see it either.
const clientMarker = "JOBLET_E2E_CLIENT_MARKER"

// stopGrace is the stop grace period the suite runs with (JOBLET_STOP_GRACE).
const stopGrace = 2 * time.Second

const (
	readyTimeout    = 60 * time.Second
	shutdownTimeout = 30 * time.Second
)

// binaries are what the suite needs in the bin dir.
var binaries = []string{"joblet", "joblet-isolator", "joblet-logd", "joblet-netd", "joblet-scheduler", "joblet-gateway", "rnx"}

// theSuite is the one running suite shared by every test, or nil when the
// tests are skipped (skipReason says why).
var (
	theSuite   *suite
	skipReason string
)

// suite is a running bin/joblet and what the tests need to talk to it.
type suite struct {
	binDir    string
	devDir    string
	port      int
	stderrLog string // the supervisor's stderr (and stdout), for failure reports
	cmd       *exec.Cmd
	started   time.Time
	exited    chan struct{} // closed when the supervisor has exited

	// netns, when set, is the network namespace (a path such as
	// /run/netns/NAME) the suite and every rnx aimed at it run in; empty
	// for the package's suite, which runs in the test binary's own.
	netns string

	mu       sync.Mutex
	seenPIDs map[int]string // every service pid seen in pids.json, for the leak check
}

// suiteOptions says how launchSuite starts a suite other than the package's one.
type suiteOptions struct {
	devDir string // the dev dir to use (made if missing); empty: a fresh temp dir
	netns  string // see suite.netns
}

func TestMain(m *testing.M) {
	flag.Parse()
	// Everything runs in a network namespace of its own (netns_test.go).
	if code, done := enterPrivateNetns(); done {
		os.Exit(code)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	binDir, reason := preconditions()
	if reason != "" {
		if os.Getenv(envRequired) == "1" {
			fmt.Fprintf(os.Stderr, "e2e: %s=1 but the suite cannot run: %s\n", envRequired, reason)
			return 1
		}
		skipReason = reason
		fmt.Fprintf(os.Stderr, "e2e: skipping every test: %s\n", reason)
		return m.Run()
	}

	// rnx keeps TLS sessions in the user's cache by default: the tests'
	// rnx processes keep theirs in a file of their own, removed at the end,
	// so that a run leaves nothing in the home directory.
	sessions, err := os.MkdirTemp("/tmp", "joblet-e2e-rnx-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(sessions)
	os.Setenv("RNX_SESSION_CACHE", filepath.Join(sessions, "tls-sessions"))

	s, err := startSuite(binDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: start the suite: %v\n", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: tests failed; last lines of the suite's log (%s):\n%s\n", s.stderrLog, s.logTail(60))
	}
	if problems := s.shutdown(); len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: SHUTDOWN FAILED, the suite left things behind:\n")
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "  - %s\n", p)
		}
		fmt.Fprintf(os.Stderr, "last lines of the suite's log (%s):\n%s\n", s.stderrLog, s.logTail(60))
		return 1
	}
	if code == 0 {
		_ = os.Remove(s.stderrLog)
	}
	return code
}

// preconditions finds the bin dir and says why the suite cannot run, if it cannot.
func preconditions() (binDir, reason string) {
	binDir = os.Getenv(envBinDir)
	if binDir == "" {
		binDir = filepath.Join("..", "bin")
	}
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return "", fmt.Sprintf("bin dir %q: %v", binDir, err)
	}
	if os.Geteuid() != 0 {
		return abs, "not root: the suite must be started as root (run `sudo go test ./e2e/...`)"
	}
	var missing []string
	for _, b := range binaries {
		if fi, err := os.Stat(filepath.Join(abs, b)); err != nil || fi.IsDir() {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return abs, fmt.Sprintf("binaries missing from %s: %s (run `make build`, or set %s)",
			abs, strings.Join(missing, ", "), envBinDir)
	}
	return abs, ""
}

// startSuite starts the package's suite: bin/joblet in a fresh dev dir,
// once it printed its ready line.
func startSuite(binDir string) (*suite, error) {
	s, err := launchSuite(binDir, suiteOptions{})
	if err != nil {
		return nil, err
	}
	theSuite = s
	return s, nil
}

// launchSuite starts bin/joblet as opt says and waits for its ready line.
func launchSuite(binDir string, opt suiteOptions) (*suite, error) {
	devDir := opt.devDir
	var err error
	if devDir == "" {
		devDir, err = os.MkdirTemp("/tmp", "joblet-e2e-")
	} else {
		err = os.MkdirAll(devDir, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("dev dir: %w", err)
	}
	// Like a freshly cloned repo: the dev dir itself is world-traversable.
	if err := os.Chmod(devDir, 0o755); err != nil {
		return nil, fmt.Errorf("dev dir: %w", err)
	}
	logFile, err := os.CreateTemp("/tmp", "joblet-e2e-suite-*.log")
	if err != nil {
		return nil, fmt.Errorf("suite log: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &suite{
		binDir:    binDir,
		devDir:    devDir,
		port:      port,
		stderrLog: logFile.Name(),
		exited:    make(chan struct{}),
		seenPIDs:  map[int]string{},
		netns:     opt.netns,
	}

	cmd := s.command(filepath.Join(binDir, "joblet"))
	cmd.Env = append(os.Environ(),
		"JOBLET_DEV_DIR="+devDir,
		"JOBLET_PORT="+strconv.Itoa(port),
		"JOBLET_STOP_GRACE="+stopGrace.String(),
		supervisorMarker+"=leak",
	)
	cmd.Stderr = logFile
	// If the test binary dies without its teardown, the suite still goes away.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	s.cmd = cmd

	ready := make(chan struct{})
	go func() {
		// stdout is copied to the log too, and drained until the end so the
		// supervisor never blocks on a full pipe.
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintf(logFile, "[stdout] %s\n", line)
			if !signalled && strings.Contains(line, "ready") {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		// Not after the reader: a leaked child holding stdout open must not
		// hide the supervisor's exit. Wait closes our end of the pipe.
		_ = cmd.Wait()
		close(s.exited)
	}()

	select {
	case <-ready:
	case <-s.exited:
		s.removeDevDir()
		return nil, fmt.Errorf("bin/joblet exited before it was ready (%v); its log:\n%s", cmd.ProcessState, s.logTail(60))
	case <-time.After(readyTimeout):
		_ = cmd.Process.Kill()
		<-s.exited
		s.removeDevDir()
		return nil, fmt.Errorf("bin/joblet printed no ready line within %v; its log:\n%s", readyTimeout, s.logTail(60))
	}
	for _, f := range []string{s.adminConfig(), s.viewerConfig()} {
		if _, err := os.Stat(f); err != nil {
			_ = s.shutdown()
			return nil, fmt.Errorf("ready, but no client config: %w", err)
		}
	}
	if _, err := s.pids(); err != nil {
		_ = s.shutdown()
		return nil, fmt.Errorf("ready, but: %w", err)
	}
	return s, nil
}

// command is exec.Command, run in the suite's network namespace when it
// has one of its own (nsenter execs the program, so the pid is the same).
func (s *suite) command(name string, args ...string) *exec.Cmd {
	if s.netns == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("nsenter", append([]string{"--net=" + s.netns, "--", name}, args...)...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *suite) adminConfig() string  { return filepath.Join(s.devDir, "rnx-admin.yml") }
func (s *suite) viewerConfig() string { return filepath.Join(s.devDir, "rnx-viewer.yml") }
func (s *suite) pidsFile() string {
	return filepath.Join(s.devDir, "state", "supervisor", "pids.json")
}

// pids reads pids.json: service name → pid. Every pid seen is remembered for
// the leak check at shutdown.
func (s *suite) pids() (map[string]int, error) {
	b, err := os.ReadFile(s.pidsFile())
	if err != nil {
		return nil, fmt.Errorf("pids.json: %w", err)
	}
	var m map[string]int
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("pids.json %q: %w", b, err)
	}
	for _, name := range []string{"gateway", "isolator", "logd"} {
		if m[name] <= 0 {
			return nil, fmt.Errorf("pids.json %q: no pid for %s", b, name)
		}
	}
	s.mu.Lock()
	for name, pid := range m {
		s.seenPIDs[pid] = name
	}
	s.mu.Unlock()
	return m, nil
}

// shutdown SIGTERMs the supervisor and lists everything it left behind.
func (s *suite) shutdown() []string {
	var problems []string
	// A last look, so the pids of the services running now are checked too,
	// and at the job cgroups that exist now, which must all be gone after.
	var cgroups []string
	if pids, err := s.pids(); err != nil {
		problems = append(problems, fmt.Sprintf("before shutdown: %v", err))
	} else if cgroups, err = s.jobCgroups(pids["isolator"]); err != nil {
		problems = append(problems, fmt.Sprintf("before shutdown: %v", err))
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		if st := s.cmd.ProcessState; st != nil && !st.Success() {
			problems = append(problems, fmt.Sprintf("bin/joblet exited with %v after SIGTERM", st))
		}
	case <-time.After(shutdownTimeout):
		problems = append(problems, fmt.Sprintf("bin/joblet still running %v after SIGTERM; killed", shutdownTimeout))
		_ = s.cmd.Process.Kill()
		<-s.exited
	}

	// Children are reparented when the supervisor exits; give the reaper a moment.
	deadline := time.Now().Add(2 * time.Second)
	for {
		var alive []string
		s.mu.Lock()
		for pid, name := range s.seenPIDs {
			if processAlive(pid) {
				alive = append(alive, fmt.Sprintf("%s (pid %d)", name, pid))
			}
		}
		s.mu.Unlock()
		stray := s.strayProcesses()
		for pid, exe := range stray {
			alive = append(alive, fmt.Sprintf("pid %d runs %s", pid, exe))
		}
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, a := range alive {
				problems = append(problems, "process still alive: "+a)
			}
			// Reported; now leave the machine clean. Only this suite's
			// processes, so a recycled pid or another suite is never hit.
			for pid := range stray {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, dir := range cgroups {
		if _, err := os.Stat(dir); err == nil {
			problems = append(problems, "job cgroup left behind: "+dir)
		}
	}

	// Daemons built with -race (make reliability) report data races on
	// stderr, which is the suite's log, and go on: a race is a failure.
	if b, err := os.ReadFile(s.stderrLog); err == nil && strings.Contains(string(b), "WARNING: DATA RACE") {
		problems = append(problems, fmt.Sprintf("the race detector reported %d data races in the services (see %s)",
			strings.Count(string(b), "WARNING: DATA RACE"), s.stderrLog))
	}

	mounts, err := mountsUnder(s.devDir)
	if err != nil {
		problems = append(problems, err.Error())
	}
	for _, m := range mounts {
		problems = append(problems, "mount left behind: "+m)
	}
	if len(mounts) == 0 && err == nil {
		s.removeDevDir()
	} else {
		// Removing a tree with live bind mounts in it could delete host files.
		problems = append(problems, "dev dir kept because of the mounts above: "+s.devDir)
	}
	return problems
}

// jobCgroups lists the cgroups of this suite's jobs that exist now: the
// directories in or one level below the isolator's own cgroups named after a
// job id that `rnx list --json` reports, made since the suite started.
func (s *suite) jobCgroups(isolator int) ([]string, error) {
	bases, err := cgroupDirs(isolator)
	if err != nil {
		return nil, err
	}
	cmd := s.command(filepath.Join(s.binDir, "rnx"), "list", "--json")
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+s.adminConfig())
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rnx list --json: %w", err)
	}
	jobs, err := parseJobs(string(out))
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for id := range jobs {
		ids[id] = true
	}
	var dirs []string
	// Only this suite's own parent: other suites on the machine (other test
	// runs) have job cgroups with the same ids under parents of their own.
	own := s.cgroupParent()
	for _, d := range jobCgroupDirs(bases, ids) {
		if filepath.Base(filepath.Dir(d)) != own {
			continue
		}
		if fi, err := os.Stat(d); err == nil && !fi.ModTime().Before(s.started.Add(-time.Second)) {
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

func (s *suite) removeDevDir() {
	if err := os.RemoveAll(s.devDir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: remove dev dir: %v\n", err)
	}
}

// strayProcesses maps the pids of live processes of this suite (running one
// of its binaries, with its dev dir in their command line or environment) to
// their binary. Another suite started from the same binaries elsewhere on the
// machine does not count.
func (s *suite) strayProcesses() map[int]string {
	out := map[int]string{}
	// A job's shim runs from a sealed copy of the isolator, so neither its
	// exe nor its cmdline names the suite: it is the suite's when it is
	// named joblet-shim and lives in the suite's network namespace.
	netns := s.netns
	if netns == "" {
		netns = "/proc/self/ns/net"
	}
	suiteNet, _ := os.Readlink(netns)
	if fi, err := os.Stat(netns); err == nil && suiteNet == "" {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			suiteNet = fmt.Sprintf("net:[%d]", st.Ino)
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !processAlive(pid) {
			continue
		}
		if comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); strings.TrimSpace(string(comm)) == "joblet-shim" {
			if ns, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); ns != "" && ns == suiteNet {
				out[pid] = "joblet-shim"
			}
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || !strings.HasPrefix(exe, s.binDir+string(os.PathSeparator)) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if strings.Contains(string(cmdline), s.devDir) || strings.Contains(string(environ), s.devDir) {
			out[pid] = exe
		}
	}
	return out
}

// cgroupParent is the name of this suite's job cgroup parent: the
// isolator names it after a hash of its state directory (isolator/cgroup),
// so suites sharing the machine never touch each other's jobs.
func (s *suite) cgroupParent() string {
	sum := sha256.Sum256([]byte(filepath.Join(s.devDir, "state")))
	return "joblet-" + hex.EncodeToString(sum[:6])
}

// processAlive says whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] != 'Z'
}

// mountsUnder lists the mount points in /proc/self/mountinfo that mention dir.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, dir) {
			out = append(out, line)
		}
	}
	return out, nil
}

// logTail returns the last n lines of the suite's log.
func (s *suite) logTail(n int) string {
	b, err := os.ReadFile(s.stderrLog)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.stderrLog, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// needSuite returns the running suite, or skips the test when there is none.
// A failing test gets the tail of the suite's log in its output.
func needSuite(t *testing.T) *suite {
	t.Helper()
	if theSuite == nil {
		if skipReason == "" {
			skipReason = "the suite is not running"
		}
		t.Skip(skipReason)
	}
	s := theSuite
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of the suite's log (%s):\n%s", s.stderrLog, s.logTail(40))
		}
	})
	select {
	case <-s.exited:
		t.Fatalf("bin/joblet has exited (%v)", s.cmd.ProcessState)
	default:
	}
	return s
}
