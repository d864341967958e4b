package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/supervisor/backoff"
	"github.com/joblet-dev/joblet/supervisor/child"
	"github.com/joblet-dev/joblet/supervisor/internal/fakesvc"
)

func TestMain(m *testing.M) {
	fakesvc.Run()
	os.Exit(m.Run())
}

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func readPids(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]int
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func fakeService(t *testing.T, name string, logs io.Writer) *service {
	return &service{
		spec: child.Spec{
			Name: name, Path: os.Args[0], Args: []string{"--config", fakesvc.Config(t)},
			Env: fakesvc.Env(fakesvc.Clean), PluginDir: t.TempDir(), StopTimeout: 10 * time.Second,
		},
		log:     zerolog.New(logs).With().Str("service", name).Logger(),
		backoff: backoff.New(50*time.Millisecond, time.Second, time.Minute),
	}
}

func TestWatchdogRestartsHungService(t *testing.T) {
	logs := &syncBuffer{}
	pids := filepath.Join(t.TempDir(), "pids.json")
	sv := &supervisor{stderr: io.Discard, pids: newPidFile(pids)}
	svc := fakeService(t, "hung", logs)
	var firstPid atomic.Int64
	svc.watchdog = &watchdog{
		// The first process "hangs"; its successor answers.
		probe: func(context.Context) error {
			if int64(svc.current().Pid()) == firstPid.Load() {
				return errors.New("no answer")
			}
			return nil
		},
		every: 50 * time.Millisecond, failures: 3, startup: 0,
	}
	if err := sv.start(svc); err != nil {
		t.Fatal(err)
	}
	first := svc.current()
	firstPid.Store(int64(first.Pid()))
	sv.services = append(sv.services, svc)
	ctx, cancel := context.WithCancel(context.Background())
	sv.watch(ctx, svc)
	defer func() { cancel(); sv.stop() }()

	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("hung process not ended; logs:\n%s", logs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for readPids(t, pids)["hung"] == first.Pid() {
		if time.Now().After(deadline) {
			t.Fatalf("hung service not restarted; logs:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "stopped answering") {
		t.Fatalf("restart reason not logged:\n%s", logs)
	}
	// The successor answers: it must be left alone.
	second := svc.current()
	time.Sleep(500 * time.Millisecond)
	if svc.current() != second || syscall.Kill(second.Pid(), 0) != nil {
		t.Fatal("a healthy service was restarted")
	}
}

func TestSuperviseRestartsAndStopsInReverse(t *testing.T) {
	logs := &syncBuffer{}
	pids := filepath.Join(t.TempDir(), "pids.json")
	sv := &supervisor{stderr: io.Discard, pids: newPidFile(pids)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, name := range []string{"first", "second"} {
		svc := fakeService(t, name, logs)
		if err := sv.start(svc); err != nil {
			t.Fatal(err)
		}
		sv.services = append(sv.services, svc)
		sv.watch(ctx, svc)
	}
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			cancel()
			sv.stop()
		}
	}
	defer stopAll()

	before := readPids(t, pids)
	if err := syscall.Kill(before["first"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var after map[string]int
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = readPids(t, pids)
		if after["first"] != before["first"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first not restarted; logs:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after["second"] != before["second"] {
		t.Fatalf("second restarted too: %v -> %v", before, after)
	}
	if syscall.Kill(after["first"], 0) != nil {
		t.Fatalf("restarted first (pid %d) is not running", after["first"])
	}
	if !strings.Contains(logs.String(), "service exited unexpectedly") {
		t.Fatalf("crash not logged:\n%s", logs)
	}

	stopAll()
	for name, pid := range after {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("%s (pid %d) still running after stop", name, pid)
		}
	}
	out := logs.String()
	second := strings.Index(out, `"service":"second","pid":`+strconv.Itoa(after["second"])+`,"message":"stopping service"`)
	first := strings.Index(out, `"service":"first","pid":`+strconv.Itoa(after["first"])+`,"message":"stopping service"`)
	if second < 0 || first < 0 || second > first {
		t.Fatalf("want second stopped before first; logs:\n%s", out)
	}
}
