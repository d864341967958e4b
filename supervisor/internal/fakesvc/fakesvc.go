// Package fakesvc lets a test binary stand in for a Joblet service: a test's
// TestMain calls Run, and the test launches its own binary with the
// environment from Env, so the supervisor code is exercised over real
// go-plugin processes without the real services (or root).
package fakesvc

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/joblet-dev/joblet/proto/daemon"
)

const envMode = "JOBLET_FAKE_SERVICE"

// Modes of the fake service.
const (
	Clean    = "clean"    // stops when asked
	Stubborn = "stubborn" // ignores every request to stop
)

// Run turns this process into the fake service when launched as one, and
// returns otherwise. Call it first in TestMain.
func Run() {
	mode := os.Getenv(envMode)
	if mode == "" {
		return
	}
	os.Exit(daemon.Main("fake", func(ctx context.Context, _ daemon.Env) error {
		if mode == Stubborn {
			select {}
		}
		<-ctx.Done()
		return nil
	}, daemon.WithoutSocket()))
}

// Env is the environment that makes the test binary run as the fake in mode.
func Env(mode string) []string { return []string{"PATH=/usr/bin:/bin", envMode + "=" + mode} }

// Config writes a config file the fake accepts and returns its path.
func Config(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "joblet-config.yml")
	if err := os.WriteFile(path, []byte("version: \"1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
