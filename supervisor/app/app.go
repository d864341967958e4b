// Package app is the embedded-mode supervisor (bin/joblet): it prepares the
// dev directory (certificates, client and daemon configs), launches logd,
// netd, the isolator, the scheduler and the unprivileged gateway with
// go-plugin, reports when the
// suite is ready, restarts services that die, and stops everything on
// SIGINT/SIGTERM.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/daemon"
	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/proto/transport"
	"github.com/joblet-dev/joblet/supervisor/backoff"
	"github.com/joblet-dev/joblet/supervisor/devcerts"
	"github.com/joblet-dev/joblet/supervisor/devenv"
	"github.com/joblet-dev/joblet/supervisor/ready"
)

// Service names, which are also their socket names and binary suffixes.
const (
	Logd      = "logd"
	Netd      = "netd"
	Isolator  = "isolator"
	Scheduler = "scheduler"
	Gateway   = "gateway"
)

// services are every service, in start order: what a service calls is up
// before it (the isolator calls logd and netd; the scheduler calls the
// isolator; the gateway calls them all). They stop in reverse order, so
// the isolator ends its jobs (and releases their networks) while netd and
// logd still run.
var services = []string{Logd, Netd, Isolator, Scheduler, Gateway}

// startupTimeout bounds how long each service has to become ready.
const startupTimeout = 30 * time.Second

// stopMargin is added to a service's own grace period before it is killed.
const stopMargin = 5 * time.Second

// Main runs the supervisor until SIGINT/SIGTERM and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := logging.New("supervisor", os.Stderr, "")
	// It relays every service's log lines: a burst of jobs is a burst of
	// allocations here too.
	go daemon.ReleaseWhenIdle(ctx)
	if err := Run(ctx, log, os.Stdout, os.Stderr, os.Getenv); err != nil {
		log.Error().Err(err).Msg("joblet failed")
		return 1
	}
	return 0
}

// Run is Main with its dependencies passed in.
func Run(ctx context.Context, log zerolog.Logger, stdout, stderr io.Writer, getenv func(string) string) error {
	if os.Geteuid() != 0 {
		return errors.New("joblet must run as root: embedded mode launches the root helpers and drops the gateway to an unprivileged user (try: sudo bin/joblet)")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	binDir := filepath.Dir(exe)
	dir, err := devenv.ResolveDir(getenv, exe)
	if err != nil {
		return err
	}
	l := devenv.Layout{Dir: dir}
	set, err := settingsFrom(getenv)
	if err != nil {
		return err
	}
	id, err := devenv.GatewayIdentity(getenv, devenv.OSLookup)
	if err != nil {
		return err
	}
	bins := map[string]string{}
	for _, name := range services {
		bins[name] = filepath.Join(binDir, "joblet-"+name)
		if _, err := os.Stat(bins[name]); err != nil {
			return fmt.Errorf("service binary missing next to %s (run make build): %w", exe, err)
		}
	}
	log = log.With().Str("dev_dir", dir).Logger()

	if err := prepareDirs(l); err != nil {
		return err
	}
	unlock, err := lock(filepath.Join(l.SupervisorDir(), "lock"))
	if err != nil {
		return err
	}
	defer unlock()

	b, err := ensureCerts(log, l)
	if err != nil {
		return err
	}
	addr := gatewayAddr(set.Port)
	for path, pair := range map[string]struct{ cert, key []byte }{
		l.AdminConfig():  {b.Admin.CertPEM, b.Admin.KeyPEM},
		l.ViewerConfig(): {b.Viewer.CertPEM, b.Viewer.KeyPEM},
	} {
		wrote, err := ensureClientConfig(path, clientConfig(addr, pair.cert, pair.key, b.CA.CertPEM))
		if err != nil {
			return err
		}
		if wrote {
			log.Info().Str("path", path).Str("address", addr).Msg("wrote client config")
		}
	}
	if err := portFree(addr); err != nil {
		return err
	}

	pl, err := place(l, id, bins[Gateway], FallbackBase)
	if err != nil {
		return err
	}
	if pl.Fallback != "" {
		log.Warn().Str("fallback_dir", pl.Fallback).Str("reason", pl.Reason).
			Msg("the gateway cannot reach the dev dir; its sockets, config and binary live in the fallback dir until shutdown")
		defer func() {
			if err := os.RemoveAll(pl.Fallback); err != nil {
				log.Warn().Err(err).Msg("cannot remove fallback dir")
			}
		}()
		if err := transport.PrepareDir(pl.Fallback, id.GID); err != nil {
			return err
		}
		if pl.GatewayBin != bins[Gateway] {
			if err := installBinary(bins[Gateway], pl.GatewayBin, id.GID); err != nil {
				return err
			}
		}
	}
	cfg := daemonConfig(l, pl.RunDir, id, set.Port, set.Grace, b)
	for _, path := range []string{l.ConfigPath(), pl.GatewayConfig} {
		// 0640 root:gateway: the gateway reads it, and it holds the server key.
		if err := config.Save(cfg, path, 0o640, id.GID); err != nil {
			return err
		}
	}
	if err := transport.PrepareDir(pl.RunDir, id.GID); err != nil {
		return err
	}
	defer cleanRunDir(log, pl.RunDir)

	specs, err := childSpecs(pl, l, bins, id, set, logFormat(getenv, stderr))
	if err != nil {
		return err
	}
	sv := &supervisor{stderr: stderr, pids: newPidFile(l.PidsFile())}
	defer func() {
		if err := sv.pids.remove(); err != nil {
			log.Warn().Err(err).Msg("cannot remove pids file")
		}
	}()
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer func() {
		stopWatching()
		sv.stop()
		log.Info().Msg("stopped")
	}()

	probes := map[string]func(context.Context) error{
		Gateway: func(ctx context.Context) error {
			return ready.Gateway(ctx, addr, adminTLS(b))
		},
	}
	for _, name := range []string{Logd, Netd, Isolator, Scheduler} {
		probes[name] = func(ctx context.Context) error { return ready.Helper(ctx, cfg.SocketPath(name)) }
	}
	for _, spec := range specs {
		svc := &service{
			spec:     spec,
			log:      logging.New(spec.Name, stderr, "").With().Str("by", "supervisor").Logger(),
			backoff:  backoff.Default(),
			watchdog: defaultWatchdog(probes[spec.Name]),
		}
		if err := sv.start(svc); err != nil {
			return err
		}
		sv.services = append(sv.services, svc)
		if err := waitReady(ctx, svc, probes[spec.Name]); err != nil {
			return err
		}
		sv.watch(watchCtx, svc)
	}

	fmt.Fprintf(stdout, "joblet: ready — try: %s  (gateway %s, dev dir %s)\n", tryHint(getenv, binDir, l), addr, dir)
	<-ctx.Done()
	log.Info().Msg("shutting down")
	return nil
}

// waitReady waits for svc's probe, failing early if its process ends.
func waitReady(ctx context.Context, svc *service, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	p := svc.current()
	go func() {
		select {
		case <-p.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := ready.Wait(ctx, probe); err != nil {
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited while starting (see its log above)", svc.spec.Name)
		default:
			return fmt.Errorf("%s not ready: %w", svc.spec.Name, err)
		}
	}
	return nil
}

func tryHint(getenv func(string) string, binDir string, l devenv.Layout) string {
	if getenv(devenv.EnvDir) == "" {
		return "bin/rnx run echo hi"
	}
	return fmt.Sprintf("RNX_CONFIG=%s %s run echo hi", l.AdminConfig(), filepath.Join(binDir, "rnx"))
}

func prepareDirs(l devenv.Layout) error {
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return fmt.Errorf("dev dir: %w", err)
	}
	// State belongs to the root helpers; the gateway holds none.
	if err := os.MkdirAll(l.SupervisorDir(), 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := os.Chmod(l.StateDir(), 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return nil
}

// lock makes sure one supervisor at a time uses a dev dir.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another joblet is already running with this dev dir (%s is locked): %w", path, err)
	}
	return func() { f.Close() }, nil
}

func ensureCerts(log zerolog.Logger, l devenv.Layout) (devcerts.Bundle, error) {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		hosts = append(hosts, h)
	}
	b, err := devcerts.Ensure(l.CertsDir(), hosts, time.Now())
	if err != nil {
		return b, fmt.Errorf("dev certificates: %w", err)
	}
	if len(b.Issued) > 0 {
		log.Info().Strs("issued", b.Issued).Str("dir", l.CertsDir()).Msg("issued dev certificates")
	}
	return b, nil
}

// portFree fails early with a clear message instead of a gateway crash loop.
func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gateway address %s is not free (set %s to use another port): %w", addr, EnvPort, err)
	}
	return ln.Close()
}

func adminTLS(b devcerts.Bundle) *tls.Config {
	cert, err := tls.X509KeyPair(b.Admin.CertPEM, b.Admin.KeyPEM)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CA.CertPEM)
	cfg := &tls.Config{RootCAs: pool, ServerName: listenHost, MinVersion: tls.VersionTLS13}
	if err == nil { // devcerts has checked the pair; without it the probe fails clearly
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

func logFormat(getenv func(string) string, stderr io.Writer) string {
	if f := getenv(EnvLogFormat); f != "" {
		return f
	}
	// The services write to a pipe; keep them readable when we are on a terminal.
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return "console"
	}
	return "json"
}

// cleanRunDir removes what the services and go-plugin leave in the run dir.
func cleanRunDir(log zerolog.Logger, runDir string) {
	for _, name := range services {
		for _, p := range []string{transport.SocketPath(runDir, name), pluginDir(runDir, name)} {
			if err := os.RemoveAll(p); err != nil {
				log.Warn().Err(err).Str("path", p).Msg("cannot clean up")
			}
		}
	}
	// netd's directory of namespace pins: only if empty (a pin is a mount).
	os.Remove(filepath.Join(runDir, "netns"))
	os.Remove(runDir) // only if empty: someone else's files stay
}
