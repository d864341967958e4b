// Package integration runs the real bin/joblet with the real services, as
// root, and checks what a user relies on: it gets ready, the gateway runs
// unprivileged, a killed helper comes back, and SIGTERM leaves nothing
// behind.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/supervisor/ready"
)

func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the supervisor launches root helpers and drops the gateway to another user")
	}
}

// build compiles the suite's binaries into a temp bin dir, skipping while a
// service's command does not exist yet.
func build(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for name, mod := range map[string]string{
		"joblet":           "supervisor",
		"joblet-logd":      "logd",
		"joblet-netd":      "netd",
		"joblet-isolator":  "isolator",
		"joblet-scheduler": "scheduler",
		"joblet-gateway":   "gateway",
	} {
		src := filepath.Join("..", "..", mod, "cmd", name)
		if m, _ := filepath.Glob(filepath.Join(src, "*.go")); len(m) == 0 {
			t.Skipf("%s does not exist yet; the integration test needs every service", src)
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, name), "./cmd/"+name)
		cmd.Dir = filepath.Join("..", "..", mod)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer is the supervisor's stderr, shown when a check fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func readPids(t *testing.T, dev string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dev, "state", "supervisor", "pids.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]int
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// procStatus returns the named fields of /proc/pid/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie is gone for every purpose but its parent's bookkeeping.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

func waitFor(t *testing.T, what string, timeout time.Duration, logs fmt.Stringer, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; supervisor log:\n%s", what, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEmbeddedSuite(t *testing.T) {
	requiresRoot(t)
	bin := build(t)
	dev := filepath.Join(t.TempDir(), "dev")
	port := freePort(t)

	logs := &lockedBuffer{}
	cmd := exec.Command(filepath.Join(bin, "joblet"))
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"JOBLET_DEV_DIR=" + dev,
		"JOBLET_PORT=" + strconv.Itoa(port),
		"JOBLET_STOP_GRACE=2s",
		"JOBLET_LOG_FORMAT=json",
		"JOBLET_LOG_LEVEL=debug",
	}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when joblet has exited, with waitErr set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	seen := map[int]string{} // every child pid ever, to check none survives
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		for pid := range seen {
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	readyLine := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				readyLine <- sc.Text()
			}
		}
	}()
	select {
	case line := <-readyLine:
		if !strings.Contains(line, fmt.Sprintf("127.0.0.1:%d", port)) || !strings.Contains(line, dev) {
			t.Errorf("ready line %q names neither the gateway address nor the dev dir", line)
		}
	case <-exited:
		t.Fatalf("joblet exited before ready: %v\n%s", waitErr, logs)
	case <-time.After(90 * time.Second):
		t.Fatalf("joblet not ready after 90s:\n%s", logs)
	}

	pids := readPids(t, dev)
	for svc, pid := range pids {
		seen[pid] = svc
	}
	for _, svc := range []string{"logd", "netd", "isolator", "scheduler", "gateway"} {
		if pids[svc] <= 0 || !alive(pids[svc]) {
			t.Fatalf("%s pid %d not running; pids %v", svc, pids[svc], pids)
		}
	}

	t.Run("log level passed on", func(t *testing.T) {
		for svc, pid := range pids {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(strings.Split(string(b), "\x00"), "JOBLET_LOG_LEVEL=debug") {
				t.Errorf("%s's environment %q lacks JOBLET_LOG_LEVEL=debug", svc, b)
			}
		}
		if !strings.Contains(logs.String(), `"level":"debug"`) {
			t.Errorf("no debug line logged at JOBLET_LOG_LEVEL=debug:\n%s", logs)
		}
	})

	t.Run("gateway is unprivileged", func(t *testing.T) {
		st := procStatus(t, pids["gateway"])
		for _, k := range []string{"Uid", "Gid"} {
			for _, f := range strings.Fields(st[k]) {
				if f == "0" {
					t.Errorf("gateway %s: %s, want no zero", k, st[k])
				}
			}
		}
		if st["Groups"] != "" {
			t.Errorf("gateway supplementary groups %q, want none", st["Groups"])
		}
		for _, k := range []string{"CapEff", "CapPrm", "CapAmb"} {
			if st[k] != "0000000000000000" {
				t.Errorf("gateway %s = %s, want 0", k, st[k])
			}
		}
	})

	t.Run("dev files", func(t *testing.T) {
		for _, name := range []string{"rnx-admin.yml", "rnx-viewer.yml"} {
			c, err := clientconfig.Load(filepath.Join(dev, name))
			if err != nil {
				t.Fatal(err)
			}
			n, err := c.Node("")
			if err != nil {
				t.Fatal(err)
			}
			if n.Address != fmt.Sprintf("127.0.0.1:%d", port) {
				t.Errorf("%s address %q", name, n.Address)
			}
		}
		fi, err := os.Stat(filepath.Join(dev, "joblet-config.yml"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("joblet-config.yml mode %v, want 0640", fi.Mode())
		}
	})

	cfg, err := config.Load(filepath.Join(dev, "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Joblet.StopGracePeriod != 2*time.Second {
		t.Errorf("stop grace %v, want JOBLET_STOP_GRACE's 2s", cfg.Joblet.StopGracePeriod)
	}

	// SIGKILL ends the process; SIGTERM (plain kill) stops the service while
	// its go-plugin server may linger, which the watchdog catches.
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run("helper killed with "+sig.String()+" is restarted", func(t *testing.T) {
			old := readPids(t, dev)["logd"]
			if err := syscall.Kill(old, sig); err != nil {
				t.Fatal(err)
			}
			var now int
			waitFor(t, "logd to be restarted", 30*time.Second, logs, func() bool {
				now = readPids(t, dev)["logd"]
				return now != old
			})
			seen[now] = "logd"
			waitFor(t, "the restarted logd to answer", 15*time.Second, logs, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				return ready.Helper(ctx, cfg.SocketPath("logd")) == nil
			})
			if !alive(now) || alive(old) {
				t.Fatalf("after restart: new logd %d alive=%v, old %d alive=%v", now, alive(now), old, alive(old))
			}
		})
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("joblet exit after SIGTERM: %v\n%s", waitErr, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("joblet still running 30s after SIGTERM:\n%s", logs)
	}
	for pid, svc := range seen {
		if alive(pid) {
			t.Errorf("%s (pid %d) survived the shutdown", svc, pid)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{dev, cfg.Paths.RunDir} {
		if bytes.Contains(mounts, []byte(dir)) {
			t.Errorf("mounts under %s remain:\n%s", dir, mounts)
		}
	}
	for _, s := range []string{"logd", "netd", "isolator", "scheduler"} {
		if _, err := os.Stat(cfg.SocketPath(s)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s socket left behind: %v", s, err)
		}
	}
	if strings.HasPrefix(cfg.Paths.RunDir, "/run/joblet-dev/") {
		if _, err := os.Stat(filepath.Dir(cfg.Paths.RunDir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("fallback dir %s left behind: %v", filepath.Dir(cfg.Paths.RunDir), err)
		}
	}
	if _, err := os.Stat(filepath.Join(dev, "state", "supervisor", "pids.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pids.json left behind after shutdown: %v", err)
	}
	// Embedded mode's netd removes what it made (network.cleanupOnExit), in
	// the test's private namespace here, on a developer's machine there.
	for _, c := range [][]string{{"ip", "-o", "link"}, {"iptables", "-S"}, {"iptables", "-t", "nat", "-S"}} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v %s", c, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "joblet") || strings.Contains(l, "JOBLET") || strings.Contains(l, ": jv") {
				t.Errorf("left behind after shutdown (%s): %s", strings.Join(c, " "), l)
			}
		}
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != "0" {
		t.Errorf("ip_forward is %q after shutdown, want 0 as in a fresh namespace", b)
	}
}
