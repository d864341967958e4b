package child

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/supervisor/internal/fakesvc"
)

func TestMain(m *testing.M) {
	fakesvc.Run()
	os.Exit(m.Run())
}

// stubbornTimeout is how long a stop waits for the stubborn fake.
const stubbornTimeout = 500 * time.Millisecond

func spec(t *testing.T, mode string) Spec {
	timeout := 10 * time.Second // generous: the race detector slows the fake's exit
	if mode == fakesvc.Stubborn {
		timeout = stubbornTimeout
	}
	return Spec{
		Name: "fake", Path: os.Args[0], Args: []string{"--config", fakesvc.Config(t)},
		Env: fakesvc.Env(mode), PluginDir: t.TempDir(), StopTimeout: timeout,
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func start(t *testing.T, mode string) *Proc {
	t.Helper()
	p, err := Start(spec(t, mode), zerolog.Nop(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if p.Pid() <= 0 || !alive(p.Pid()) {
		t.Fatalf("pid %d not running", p.Pid())
	}
	return p
}

func TestGracefulStop(t *testing.T) {
	p := start(t, fakesvc.Clean)
	begin := time.Now()
	if p.Stop() {
		t.Fatal("a service that stops when asked was killed")
	}
	t.Logf("graceful stop took %v", time.Since(begin))
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if alive(p.Pid()) {
		t.Fatalf("pid %d still running", p.Pid())
	}
}

func TestStubbornServiceIsKilled(t *testing.T) {
	p := start(t, fakesvc.Stubborn)
	begin := time.Now()
	if !p.Stop() {
		t.Fatal("a service ignoring stop requests was not reported killed")
	}
	if took := time.Since(begin); took < stubbornTimeout || took > 5*time.Second {
		t.Fatalf("stop took %v, want about the 500ms timeout", took)
	}
	if alive(p.Pid()) {
		t.Fatalf("pid %d still running", p.Pid())
	}
}

func TestDoneWhenKilledFromOutside(t *testing.T) {
	p := start(t, fakesvc.Clean)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the process was killed")
	}
	if p.Stop() {
		t.Fatal("Stop of an already ended process reported killing it")
	}
}

func TestStartFailsClearly(t *testing.T) {
	s := spec(t, fakesvc.Clean)
	s.Path = "/nonexistent/joblet-fake"
	if _, err := Start(s, zerolog.Nop(), io.Discard); err == nil {
		t.Fatal("missing binary: want an error")
	}
	s = spec(t, fakesvc.Clean)
	s.Env = nil // no fake mode: the test binary runs tests instead of the handshake
	s.Args = []string{"-test.run=^$"}
	if _, err := Start(s, zerolog.Nop(), io.Discard); err == nil {
		t.Fatal("binary without the handshake: want an error")
	}
}
