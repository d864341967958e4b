package app

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/joblet-dev/joblet/proto/daemon"
	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/supervisor/child"
	"github.com/joblet-dev/joblet/supervisor/devenv"
)

// safePath is the PATH of every service; nothing else of ours is passed on.
const safePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// pluginDir is where service name makes its go-plugin socket.
func pluginDir(runDir, name string) string { return filepath.Join(runDir, "plugin-"+name) }

// childSpecs describes every service in start order (see services), and
// makes each one's go-plugin socket directory, owned by the user it runs
// as.
func childSpecs(pl placement, l devenv.Layout, bins map[string]string, id devenv.Identity, set settings, logFormat string) ([]child.Spec, error) {
	env := []string{"PATH=" + safePath, EnvLogFormat + "=" + logFormat}
	if set.LogLevel != "" {
		env = append(env, logging.EnvLevel+"="+set.LogLevel)
	}
	if d := os.Getenv(daemon.EnvPprofDir); d != "" {
		// Development profiling (proto/daemon): passed on when asked for.
		env = append(env, daemon.EnvPprofDir+"="+d)
	}
	specs := []child.Spec{
		{Name: Logd, Path: bins[Logd], Args: []string{"--config", l.ConfigPath()}, StopTimeout: stopMargin},
		{Name: Netd, Path: bins[Netd], Args: []string{"--config", l.ConfigPath()}, StopTimeout: stopMargin},
		// Stopping, the isolator stops its jobs: their grace period first.
		{Name: Isolator, Path: bins[Isolator], Args: []string{"--config", l.ConfigPath()}, StopTimeout: set.Grace + stopMargin},
		{Name: Scheduler, Path: bins[Scheduler], Args: []string{"--config", l.ConfigPath()}, StopTimeout: stopMargin},
		{
			Name: Gateway, Path: pl.GatewayBin, Args: []string{"--config", pl.GatewayConfig}, StopTimeout: stopMargin,
			// Groups is empty, not nil: setgroups(0) drops root's supplementary
			// groups. A non-root uid gets no capabilities at exec, and no
			// ambient ones are given.
			Cred: &syscall.Credential{Uid: uint32(id.UID), Gid: uint32(id.GID), Groups: []uint32{}},
		},
	}
	for i := range specs {
		s := &specs[i]
		s.Env = env
		s.PluginDir = pluginDir(pl.RunDir, s.Name)
		uid, gid := 0, 0
		if s.Cred != nil {
			uid, gid = id.UID, id.GID
		}
		if err := privateDir(s.PluginDir, uid, gid); err != nil {
			return nil, err
		}
	}
	return specs, nil
}

// privateDir makes a fresh 0700 directory owned by uid:gid.
func privateDir(dir string, uid, gid int) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clean %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return nil
}
