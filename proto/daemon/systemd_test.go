package daemon

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The child half of TestSocketActivation: it runs Main as systemd would
// start a socket-activated Type=notify service.
func TestMain(m *testing.M) {
	if cfg := os.Getenv("JOBLET_DAEMON_TEST_CONFIG"); cfg != "" {
		// systemd sets LISTEN_PID to the pid it forked; the test parent
		// cannot know it before the start, so the child fills it in.
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		os.Args = []string{"isolator", "--config", cfg}
		os.Exit(Main("isolator", greet))
	}
	os.Exit(m.Run())
}

// greet answers every connection with "hello" until ctx is done.
func greet(ctx context.Context, env Env) error {
	go func() { <-ctx.Done(); env.Listener.Close() }()
	for {
		c, err := env.Listener.Accept()
		if err != nil {
			return nil
		}
		c.Write([]byte("hello\n"))
		c.Close()
	}
}

func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	cfg := filepath.Join(dir, "joblet-config.yml")
	yml := "paths:\n  runDir: " + runDir + "\n  stateDir: " + filepath.Join(dir, "state") + "\n" +
		"gateway:\n  gid: " + strconv.Itoa(os.Getgid()) + "\n"
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	// The socket the "socket unit" made, and systemd's notification socket.
	sock := filepath.Join(dir, "activated.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	notifyPath := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "JOBLET_DAEMON_TEST_CONFIG="+cfg, "LISTEN_FDS=1",
		"LISTEN_FDNAMES=isolator", "NOTIFY_SOCKET="+notifyPath, "JOBLET_LOG_FORMAT=json")
	cmd.ExtraFiles = []*os.File{lf} // fd 3, SD_LISTEN_FDS_START
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	if got := readNotify(t, nc); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || line != "hello\n" {
		t.Fatalf("read from the activated socket: %q, %v", line, err)
	}
	if _, err := os.Stat(filepath.Join(runDir, "isolator.sock")); err == nil {
		t.Error("Main created its own socket although systemd passed one")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, nc); got != "STOPPING=1" {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("service exit: %v", err)
	}
}

func readNotify(t *testing.T, nc *net.UnixConn) string {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, err := nc.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return strings.TrimSpace(string(buf[:n]))
}

func TestActivatedWithoutSystemd(t *testing.T) {
	t.Setenv("LISTEN_PID", "")
	t.Setenv("LISTEN_FDS", "")
	l, err := activated("isolator")
	if err != nil || l != nil {
		t.Fatalf("activated = %v, %v; want nil, nil", l, err)
	}
}

func TestEnvReadyWithoutNotifier(t *testing.T) {
	Env{}.Ready() // the zero Env, as tests and embedded mode build it, must not panic
}
