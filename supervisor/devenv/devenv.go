// Package devenv decides where embedded mode keeps its state (the dev
// directory) and which unprivileged identity the gateway runs as.
package devenv

import (
	"errors"
	"fmt"
	"path/filepath"
)

// EnvDir overrides the dev directory.
const EnvDir = "JOBLET_DEV_DIR"

// Layout names every file and directory inside the dev directory.
type Layout struct{ Dir string }

// ConfigPath is the daemon configuration file.
func (l Layout) ConfigPath() string { return filepath.Join(l.Dir, "joblet-config.yml") }

// CertsDir holds the CA, server and client certificates.
func (l Layout) CertsDir() string { return filepath.Join(l.Dir, "certs") }

// AdminConfig is the rnx configuration with the admin client certificate.
func (l Layout) AdminConfig() string { return filepath.Join(l.Dir, "rnx-admin.yml") }

// ViewerConfig is the rnx configuration with the viewer client certificate.
func (l Layout) ViewerConfig() string { return filepath.Join(l.Dir, "rnx-viewer.yml") }

// StateDir is the suite's persisted state (paths.stateDir).
func (l Layout) StateDir() string { return filepath.Join(l.Dir, "state") }

// RunDir is where the helper sockets live (paths.runDir) unless the gateway
// cannot reach it; see access.
func (l Layout) RunDir() string { return filepath.Join(l.Dir, "run") }

// SupervisorDir is the supervisor's own state: its lock and pids.json.
func (l Layout) SupervisorDir() string { return filepath.Join(l.StateDir(), "supervisor") }

// PidsFile maps each service to the pid it runs as now.
func (l Layout) PidsFile() string { return filepath.Join(l.SupervisorDir(), "pids.json") }

// ResolveDir returns the absolute dev directory: $JOBLET_DEV_DIR when set,
// else <repo>/.dev where <repo> is the parent of the bin/ directory holding
// the executable exe.
func ResolveDir(getenv func(string) string, exe string) (string, error) {
	if d := getenv(EnvDir); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			return "", fmt.Errorf("%s=%q: %w", EnvDir, d, err)
		}
		return abs, nil
	}
	if exe == "" {
		return "", errors.New("cannot find the executable to locate the dev directory; set " + EnvDir)
	}
	abs, err := filepath.Abs(exe)
	if err != nil {
		return "", fmt.Errorf("executable path %q: %w", exe, err)
	}
	bin := filepath.Dir(abs)
	return filepath.Join(filepath.Dir(bin), ".dev"), nil
}
